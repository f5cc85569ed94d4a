"""Delivery figures: the frozen programs and their packages, beside the programs run from source.

    .venv/bin/python bench/frozen.py [--runs 5] [--rebuild] [--no-deb]

- Build: seconds of the one PyInstaller run of build_spec/all.spec (recorded when
  build/frozen-cache got it; `--rebuild` makes a fresh one) and the size of each program.
- Packages: scripts/package-deb.sh as released (xz, lintian), its seconds and each .deb's size.
- Console: start to a painted window under Xvfb, from exec until the start screen's window is
  mapped (xwininfo) and until a screenshot shows it drawn (xwd, more than 50 colours; polled, so
  within ~0.1 s), frozen folder and `python -m console` alternating, one unmeasured run first.
- Agent: start to hello accepted, frozen and source alternating (bench/frozen_agent.py's run).
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from bench.frozen_agent import OnlineWatch, machine, one_run  # noqa: E402
from tests import frozen_build  # noqa: E402
from tests.support import Api, Master, child_env  # noqa: E402
from tests.xvfb import screenshot_colours, window_titles, xvfb  # noqa: E402


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def build(rebuild: bool) -> tuple[Path, float]:
    if rebuild:
        for old in frozen_build.CACHE.glob("dist-*"):
            shutil.rmtree(old)
    dist = frozen_build.frozen_dist()
    return dist, float((dist / "build-seconds").read_text())


def console_breakdown(folder: Path) -> list[tuple[str, int]]:
    """The biggest parts of the console folder, grouped as a reader thinks of them."""
    groups = {
        "ICU (Qt's Unicode data and libraries)": "_internal/PySide6/Qt/lib/libicu*",
        "other Qt libraries and plugins": "_internal/PySide6/Qt/*",
        "PySide6 bindings and shiboken": "_internal/*/*.abi3.so*",
        "the three programs' code archives": "gdos-*",
    }
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    left = {p: p.stat().st_size for p in files}
    rows = []
    for label, pattern in groups.items():
        matched = [p for p in left if fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern)]
        rows.append((label, sum(left.pop(p) for p in matched)))
    rows.append(("Python, its modules and the other libraries", sum(left.values())))
    return rows


def packages(dist: Path) -> tuple[dict[str, int], dict[str, float], str]:
    out = Path(tempfile.mkdtemp(prefix="gdos-bench-deb-"))
    try:
        done = subprocess.run(
            [ROOT / "scripts" / "package-deb.sh", dist, out], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(done.stdout + done.stderr)
        seconds = {
            Path(m[0]).name.split("_")[0]: float(m[1])
            for m in re.findall(r"package-deb: (\S+\.deb) \([\d.]+ MiB, (\d+) s\)", done.stdout)
        }
        sizes = {p.name.split("_")[0]: p.stat().st_size for p in out.glob("*.deb")}
        lint = next((ln for ln in done.stdout.splitlines() if "lintian:" in ln), "")
        return sizes, seconds, lint
    finally:
        shutil.rmtree(out, ignore_errors=True)


def console_start(program: list[str], display: str, home: Path) -> tuple[float, float]:
    """Seconds from exec to the window mapped, and to the window drawn."""
    env = {**child_env(), "DISPLAY": display, "HOME": str(home)}
    env["XDG_CONFIG_HOME"] = str(home / "config")
    env.pop("QT_QPA_PLATFORM", None)
    t0 = time.monotonic()
    proc = subprocess.Popen(program, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mapped = painted = None
        while time.monotonic() - t0 < 60:
            if mapped is None and any(t.startswith("GDOS") for t in window_titles(display)):
                mapped = time.monotonic() - t0
            if mapped is not None and screenshot_colours(display, step=8) > 50:
                painted = time.monotonic() - t0
                break
            time.sleep(0.01)
        if mapped is None or painted is None:
            raise RuntimeError(f"{program[0]}: no painted window within 60 s")
        return mapped, painted
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def console_runs(dist: Path, runs: int) -> dict[str, list[tuple[float, float]]]:
    programs = {
        "frozen (`gdos-console/gdos-console`)": [str(dist / "gdos-console" / "gdos-console")],
        "from source (`python -m console`)": [sys.executable, "-m", "console"],
    }
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in programs}
    with xvfb() as display, tempfile.TemporaryDirectory(prefix="gdos-bench-home-") as home:
        for program in programs.values():
            console_start(program, display, Path(home))  # warm the file cache, write settings
        for _ in range(runs):
            for kind, program in programs.items():
                results[kind].append(console_start(program, display, Path(home)))
    return results


def agent_runs(dist: Path, runs: int) -> dict[str, list[dict[str, Any]]]:
    programs = {"frozen": [str(dist / "gdos-agent")], "source": [sys.executable, "-m", "agent"]}
    root = Path(tempfile.mkdtemp(prefix="gdos-bench-frozen-"))
    master = Master(root / "master", env={})
    master.launch()
    api = Api.login(master.url)
    watch = OnlineWatch(master, api.token or "")
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in programs}
    try:
        for _ in range(runs):
            for kind, program in programs.items():
                results[kind].append(one_run(kind, program, master, watch, 0.5, root))
    finally:
        watch.close()
        api.close()
        master.stop()
        shutil.rmtree(root, ignore_errors=True)
    return results


def median_range(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} ms ({min(ms):.0f}-{max(ms):.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rebuild", action="store_true", help="build afresh, timing it")
    ap.add_argument("--no-deb", action="store_true", help="skip the packages")
    args = ap.parse_args()
    compile_sources()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "console")], check=True)

    before = machine()
    kernel = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    print(f"machine at start: {before}; kernel {kernel}\n", flush=True)
    dist, build_s = build(args.rebuild)
    print(
        f"Build: {build_s:.0f} s for all three (build_spec/all.spec, each program analysed once)\n"
    )
    debs = None if args.no_deb else packages(dist)
    print("| program | size | package (xz) | packaging |")
    print("| --- | --- | --- | --- |")
    for name in ("gdos-agent", "gdos-master", "gdos-console"):
        deb = mib(debs[0][name]) if debs else "-"
        secs = f"{debs[1].get(name, 0):.0f} s" if debs else "-"
        print(f"| `{name}` | {mib(tree_size(dist / name))} | {deb} | {secs} |")
    if debs:
        print(f"\n{debs[2].strip()}")
    print("\n| part of the console folder | size |")
    print("| --- | --- |")
    for label, size in console_breakdown(dist / "gdos-console"):
        print(f"| {label} | {mib(size)} |")
    print(f"\n{args.runs} runs each, alternating, after one unmeasured run each\n", flush=True)
    consoles = console_runs(dist, args.runs)
    print("| console | start to window mapped, median (min-max) | start to window drawn |")
    print("| --- | --- | --- |")
    for kind, runs in consoles.items():
        mapped, drawn = median_range([r[0] for r in runs]), median_range([r[1] for r in runs])
        print(f"| {kind} | {mapped} | {drawn} |", flush=True)
    agents = agent_runs(dist, args.runs)
    print("\n| agent | start to hello accepted, median (min-max) |")
    print("| --- | --- |")
    for kind, agent in agents.items():
        print(f"| {kind} | {median_range([r['startup'] for r in agent])} |")
    print(f"\nmachine at end: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
