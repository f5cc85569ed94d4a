"""Debian packages of the frozen programs (`scripts/build.sh deb` runs this after `all`):

    python build_spec/package_deb.py DIST OUT [--compression xz|gzip|none] [--level N] [--no-check]

DIST holds what build_spec/all.spec built (gdos-agent, gdos-master, gdos-console/); OUT gets
gdos-{agent,master,console}_<version>_<arch>.deb. Each package is staged in a temporary tree
from the files in build_spec/debian/, built with `dpkg-deb --root-owner-group`, then checked:
desktop-file-validate on the console's desktop entry, lintian on each package (an error fails).
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gdosbuild import ROOT, build_date, git_commit

from protocol import __version__ as VERSION

DEBIAN = ROOT / "build_spec" / "debian"
MAINTAINER = os.environ.get("GDOS_DEB_MAINTAINER", "GDOS maintainers <gdos@example.org>")
UNIT_DIR = "lib/systemd/system"  # where Debian 12's debhelper puts units


@dataclass(frozen=True)
class Package:
    name: str
    section: str
    summary: str
    description: str  # the control file's long description, one paragraph
    stage: Callable[[Path, Path], None]  # (DIST, tree) -> files in place
    conffiles: tuple[str, ...] = ()
    scripts: tuple[str, ...] = ()  # maintainer scripts found as build_spec/debian/<name>.<script>
    depends: tuple[str, ...] = ()  # beyond the shared libraries' packages


def install(src: Path, tree: Path, dest: str, mode: int = 0o644) -> Path:
    target = tree / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    target.chmod(mode)
    return target


def write(tree: Path, dest: str, text: str, mode: int = 0o644) -> None:
    target = tree / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)


def stage_agent(dist: Path, tree: Path) -> None:
    from agent.autostart.command import AgentCommand
    from agent.autostart.systemd import UNIT, unit_text

    install(dist / "gdos-agent", tree, "usr/bin/gdos-agent", 0o755)
    command = AgentCommand(["/usr/bin/gdos-agent"], Path("/var/lib/gdos-agent"))
    origin = (
        "Installed by the gdos-agent package, not enabled: `gdos-agent --autostart 1` enrols "
        "the host\n# and writes its own unit in /etc/systemd/system, which systemd prefers."
    )
    unit = unit_text(command, origin, environment_file=Path("/etc/default/gdos-agent"))
    write(tree, f"{UNIT_DIR}/{UNIT}", unit)
    install(DEBIAN / "gdos-agent.default", tree, "etc/default/gdos-agent")


def stage_master(dist: Path, tree: Path) -> None:
    install(dist / "gdos-master", tree, "usr/bin/gdos-master", 0o755)
    install(DEBIAN / "gdos-master.service", tree, f"{UNIT_DIR}/gdos-master.service")
    install(DEBIAN / "gdos-master.default", tree, "etc/default/gdos-master")
    install(DEBIAN / "gdos-master.sysusers", tree, "usr/lib/sysusers.d/gdos-master.conf")


def stage_console(dist: Path, tree: Path) -> None:
    folder = tree / "usr/lib/gdos-console"
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(dist / "gdos-console", folder, symlinks=True)
    removed = unbundle_system_libraries(folder / "_internal")
    print(f"package-deb: gdos-console uses this system's {', '.join(removed)}", flush=True)
    for path in folder.rglob("*"):  # libraries and data readable, not executable
        if path.is_file() and not path.is_symlink():
            path.chmod(0o755 if path.parent == folder else 0o644)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/gdos-console").symlink_to("../lib/gdos-console/gdos-console")
    install(DEBIAN / "gdos-console.desktop", tree, "usr/share/applications/gdos-console.desktop")
    icon = "usr/share/icons/hicolor/scalable/apps/gdos-console.svg"
    install(ROOT / "resources" / "icon.svg", tree, icon)


PACKAGES = (
    Package(
        "gdos-agent",
        "admin",
        "GDOS agent: runs the services a GDOS master places on this host",
        "The agent dials out to its master, enrols once with a join token, then deploys, starts,"
        " stops and monitors the services the master places here; they outlive the agent and are"
        " re-adopted when it starts again. Installing does not enrol: the message after"
        " installing gives the one command that does.",
        stage_agent,
        conffiles=("/etc/default/gdos-agent",),
        scripts=("postinst", "prerm", "postrm"),
    ),
    Package(
        "gdos-master",
        "admin",
        "GDOS master: desired state, API and event stream of a service fleet",
        "The master keeps packages, systems, instances, alerts, users and the audit trail,"
        " commands the agents and serves the console. The package runs it as the service"
        " gdos-master, as the system user gdos, with its data in /var/lib/gdos and its flags in"
        " /etc/default/gdos-master.",
        stage_master,
        conffiles=("/etc/default/gdos-master",),
        scripts=("postinst", "prerm", "postrm"),
        # systemd-sysusers creates the gdos user, as Debian's dh_installsysusers does.
        depends=("systemd | systemd-standalone-sysusers | systemd-sysusers",),
    ),
    Package(
        "gdos-console",
        "admin",
        "GDOS desktop console, with a local master and agent",
        "The console shows a GDOS fleet live (nodes, systems, instances, charts, logs, alerts)"
        " and asks its master to act. It carries a master and an agent of its own, so with"
        " --embedded (or its menu entry's action) one workstation is a whole installation.",
        stage_console,
    ),
)


def copyright_text(package: Package) -> str:
    bundled = (
        "Python (PSF-2.0), OpenSSL (Apache-2.0), SQLite (public domain), and the Python"
        " packages of GDOS's pyproject.toml (MIT, BSD or Apache-2.0 licensed)"
    )
    if package.name == "gdos-console":
        bundled += ", Qt 6 and PySide6 (LGPL-3), ICU (Unicode-3.0)"
    return (
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Upstream-Name: GDOS\n"
        f"Comment: The frozen program carries {bundled}, each under its own license.\n\n"
        "Files: *\n"
        "Copyright: GDOS authors\n"
        "License: Apache-2.0\n"
        " On Debian systems the full text of the Apache License 2.0 is in\n"
        " /usr/share/common-licenses/Apache-2.0.\n"
    )


def changelog_text(package: Package) -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    stamp = time.gmtime(float(epoch)) if epoch else time.gmtime()
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", stamp)
    return (
        f"{package.name} ({VERSION}) unstable; urgency=medium\n\n"
        f"  * Built from GDOS {git_commit()} on {build_date()}.\n\n"
        f" -- {MAINTAINER}  {when}\n"
    )


def gzipped(tree: Path, dest: str, text: str) -> None:
    target = tree / dest
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())  # mtime 0: the same bytes for the same text (no-timestamp rule)
    target.chmod(0o644)


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed(files: list[Path]) -> set[str]:
    """The libraries these ELF files name as DT_NEEDED (objdump, many files a call)."""
    names: set[str] = set()
    for i in range(0, len(files), 200):
        chunk = [str(f) for f in files[i : i + 200]]
        out = subprocess.run(["objdump", "-p", *chunk], capture_output=True, text=True, check=True)
        names.update(
            ln.split()[1] for ln in out.stdout.splitlines() if ln.strip().startswith("NEEDED")
        )
    return names


def library_packages(tree: Path) -> list[str]:
    """The Debian packages providing the shared libraries the tree's programs need and do not
    carry (a small dpkg-shlibdeps): found with ldconfig, owned per dpkg -S. glibc's carries
    this build's version as its minimum."""
    files = [p for p in tree.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p)]
    carried = {p.name for p in tree.rglob("*")}
    wanted = sorted(needed(files) - carried)
    where = system_libraries()
    missing = [lib for lib in wanted if lib not in where]
    if missing:
        raise SystemExit(
            f"package-deb: {', '.join(missing)} not installed here, so its package is unknown "
            "(scripts/system-deps.sh screenshots packaging installs the console's)"
        )
    owner = owners([where[lib] for lib in wanted])
    unowned = [lib for lib in wanted if where[lib] not in owner]
    if unowned:
        raise SystemExit(f"package-deb: no Debian package owns {', '.join(unowned)}")
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.31"
    packages = {owner[where[lib]] for lib in wanted} - {"libc6"}
    return [f"libc6 (>= {glibc.split()[-1]})", *sorted(packages)]


@functools.cache
def system_libraries() -> dict[str, str]:
    """Library name -> path, from the dynamic linker's cache (a 64-bit system's own copies)."""
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    where: dict[str, str] = {}
    for name, flags, path in re.findall(r"^\s*(\S+) \(([^)]*)\) => (\S+)$", cache, re.M):
        if name not in where or "64" in flags:
            where[name] = path
    return where


def owners(paths: list[str]) -> dict[str, str]:
    """path -> the package owning it (under that path, its real path or its merged-/usr twin),
    for the paths a package owns; one dpkg -S for all."""
    candidates: dict[str, list[str]] = {}
    for path in paths:
        names = [path, os.path.realpath(path)]
        names += [n.removeprefix("/usr") for n in names if n.startswith("/usr/")]
        candidates[path] = names
    every = sorted({n for names in candidates.values() for n in names})
    out = subprocess.run(["dpkg", "-S", *every], capture_output=True, text=True).stdout
    owned: dict[str, str] = {}
    for line in out.splitlines():
        package, _, owned_path = line.partition(": ")
        owned.setdefault(owned_path.strip(), package.split(",")[0].split(":")[0].strip())
    found = {}
    for path, names in candidates.items():
        for name in names:
            if name in owned:
                found[path] = owned[name]
                break
    return found


def unbundle_system_libraries(internal: Path) -> list[str]:
    """Remove the copies PyInstaller made of this system's own libraries (they sit at the top of
    _internal/); the package depends on their Debian packages instead, so they get Debian's
    security updates. Wheels' libraries (Qt, psycopg's: in their packages' folders) and
    libpython (the bootloader opens it by path) stay."""
    where = system_libraries()
    copies = [
        p
        for p in sorted(internal.iterdir())
        if p.is_file()
        and not p.is_symlink()
        and ".so" in p.name
        and not p.name.startswith("libpython")
        and p.name in where
    ]
    owner = owners([where[p.name] for p in copies])
    removed = []
    for path in copies:
        if where[path.name] in owner:
            path.unlink()
            removed.append(path.name)
    for link in internal.iterdir():  # links left pointing at a removed copy
        if link.is_symlink() and not link.exists():
            link.unlink()
    return removed


def control_text(package: Package, tree: Path, arch: str) -> str:
    size_kib = sum(p.lstat().st_size for p in tree.rglob("*") if not p.is_dir()) // 1024 + 1
    depends = ", ".join([*library_packages(tree), *package.depends])
    long = "\n".join(f" {line}" for line in wrap(package.description, 78))
    return (
        f"Package: {package.name}\nVersion: {VERSION}\nArchitecture: {arch}\n"
        f"Maintainer: {MAINTAINER}\nInstalled-Size: {size_kib}\nDepends: {depends}\n"
        f"Section: {package.section}\nPriority: optional\n"
        f"Description: {package.summary}\n{long}\n"
    )


def wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line]


def md5sums(tree: Path) -> str:
    rows = []
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink() and "DEBIAN" not in path.parts:
            digest = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
            rows.append(f"{digest}  {path.relative_to(tree).as_posix()}\n")
    return "".join(rows)


def build(package: Package, dist: Path, out: Path, arch: str, compression: list[str]) -> Path:
    with tempfile.TemporaryDirectory(prefix=f"{package.name}-") as tmp:
        tree = Path(tmp) / "root"
        tree.mkdir(mode=0o755)
        package.stage(dist, tree)
        overrides = DEBIAN / "lintian" / package.name  # each with the reason it is not a fault
        if overrides.is_file():
            install(overrides, tree, f"usr/share/lintian/overrides/{package.name}")
        doc = f"usr/share/doc/{package.name}"
        write(tree, f"{doc}/copyright", copyright_text(package))
        gzipped(tree, f"{doc}/changelog.gz", changelog_text(package))
        man = (DEBIAN / f"{package.name}.1").read_text()
        gzipped(tree, f"usr/share/man/man1/{package.name}.1.gz", man)
        for path in tree.rglob("*"):
            if path.is_dir():
                path.chmod(0o755)
        control = tree / "DEBIAN"
        control.mkdir(mode=0o755)
        write(tree, "DEBIAN/control", control_text(package, tree, arch))
        write(tree, "DEBIAN/md5sums", md5sums(tree))
        if package.conffiles:
            write(tree, "DEBIAN/conffiles", "".join(f"{c}\n" for c in package.conffiles))
        for script in package.scripts:
            install(DEBIAN / f"{package.name}.{script}", tree, f"DEBIAN/{script}", 0o755)
        out.mkdir(parents=True, exist_ok=True)
        deb = out / f"{package.name}_{VERSION}_{arch}.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", *compression, "--build", str(tree), str(deb)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return deb


def check(debs: list[Path]) -> None:
    """desktop-file-validate on the console's entry, then lintian on every package at once; any
    error ends the build. Findings are printed; overrides ship in the packages with reasons."""
    entry = DEBIAN / "gdos-console.desktop"
    done = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
    if done.returncode != 0 or done.stdout.strip():
        raise SystemExit(f"package-deb: {entry.name}: {done.stdout.strip() or done.stderr}")
    t0 = time.monotonic()
    done = subprocess.run(
        ["lintian", "--tag-display-limit", "0", *map(str, debs)], capture_output=True, text=True
    )
    findings = [ln for ln in done.stdout.splitlines() if ln[:2] in ("E:", "W:", "I:")]
    for line in findings:
        print(f"  lintian {line}")
    errors = [ln for ln in findings if ln.startswith("E:")]
    if errors or done.returncode not in (0, 1):
        raise SystemExit(f"package-deb: lintian found {len(errors)} errors\n{done.stderr}")
    print(
        f"package-deb: lintian: no errors, {len(findings)} other findings in {len(debs)} "
        f"packages ({time.monotonic() - t0:.0f} s); desktop-file-validate: clean",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("dist", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--compression", default="xz", choices=["xz", "gzip", "none"])
    ap.add_argument("--level", type=int, help="compression level (dpkg-deb's default if not given)")
    ap.add_argument(
        "--no-check", action="store_true", help="skip lintian and desktop-file-validate"
    )
    ap.add_argument("--only", action="append", help="build only this package (repeatable)")
    args = ap.parse_args()
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    compression = [f"-Z{args.compression}", *([f"-z{args.level}"] if args.level else [])]
    debs = []
    for package in PACKAGES:
        if args.only and package.name not in args.only:
            continue
        t0 = time.monotonic()
        deb = build(package, args.dist, args.out, arch, compression)
        size = deb.stat().st_size / 2**20
        print(f"package-deb: {deb} ({size:.1f} MiB, {time.monotonic() - t0:.0f} s)", flush=True)
        debs.append(deb)
    if not args.no_check:
        check(debs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
