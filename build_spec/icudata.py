"""A smaller ICU data library for the console bundle (Linux).

Qt's `libicudata.so.NN` is one symbol, `icudtNN_dat`: ICU's data for every locale and converter
(about 31 MiB). Qt reads only a little of it (collation, time zones, converter aliases), and
the console speaks English: `reduced()` keeps that data for the root and English locales (ICU
falls back to root for the others) and assembles it into a library exporting the same symbol. It needs
`icupkg` (Debian: icu-devtools) and a C compiler; scripts/system-deps.sh installs both.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

# Locales kept in every tree (the English ones Qt picks for an English or unknown locale).
KEEP_LOCALES = frozenset({"root", "en", "en_001", "en_150", "en_GB", "en_US", "en_US_POSIX"})
# Qt calls ICU for collation (coll/), case mapping (in the code), time zones (zone/, zoneinfo64)
# and converters; not for break iterators, transliteration, number spelling, names of
# currencies, languages, regions or units, nor character names. Legacy code pages (UTF-8 and
# Latin-1 need no table), stringprep profiles and confusables go too.
DROP_KINDS = frozenset({"cnv", "spp", "cfu", "dict"})
DROP_TREES = frozenset({"translit", "rbnf", "brkitr", "curr", "lang", "region", "unit"})
DROP_ITEMS = frozenset({"unames.icu", "uemoji.icu", "ulayout.icu", "langInfo.res"})
LOCALE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]*)*$")  # de, de_AT, sr_Latn_RS, de__PHONEBOOK
SYMBOL = re.compile(r"\b(icudt\d+_dat)\b")
MISSING = re.compile(r"depends on missing item (\S+)")


def keep(item: str) -> bool:
    """Whether the data item (e.g. `coll/de.res`, a path inside the package) stays."""
    tree, _, name = item.rpartition("/")
    stem, _, kind = name.rpartition(".")
    if tree in DROP_TREES or kind in DROP_KINDS or item in DROP_ITEMS:
        return False
    if kind == "res" and stem not in ("res_index", "pool") and LOCALE.match(stem):
        return stem in KEEP_LOCALES
    return True


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def _symbol(library: Path) -> tuple[str, int, int]:
    """(name, file offset, size) of the library's `icudtNN_dat`."""
    table = _run(["readelf", "-sW", str(library)]).stdout
    for line in table.splitlines():
        cols = line.split()
        if len(cols) >= 8 and SYMBOL.fullmatch(cols[7]) and cols[6] != "UND":
            value, size, section = int(cols[1], 16), int(cols[2], 0), cols[6]
            break
    else:
        raise RuntimeError(f"{library.name} has no icudtNN_dat symbol")
    headers = _run(["readelf", "-SW", str(library)]).stdout
    for line in headers.splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m and m.group(1) == section:
            return cols[7], value - int(m.group(2), 16) + int(m.group(3), 16), size
    raise RuntimeError(f"{library.name}: section {section} of {cols[7]} not found")


def _tools() -> None:
    missing = [t for t in ("icupkg", "cc", "readelf") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} needed to shrink ICU's data (scripts/system-deps.sh installs it)"
        )


def _package(full: Path, out_dir: Path) -> Path:
    """The reduced .dat in out_dir; items the kept ones depend on are put back."""
    items = _run(["icupkg", "-l", str(full)]).stdout.split()
    drop = {i for i in items if not keep(i)}
    for _ in range(20):  # icupkg names a few missing dependencies per run
        listing = out_dir / "drop.txt"
        listing.write_text("".join(f"{i}\n" for i in sorted(drop)))
        small = out_dir / "out" / full.name  # the name makes the items' prefix
        done = _run(["icupkg", "-r", str(listing), str(full), str(small)])
        needed = set(MISSING.findall(done.stdout + done.stderr)) & drop
        if not needed:
            if done.returncode != 0:
                raise RuntimeError(f"icupkg failed: {done.stderr.strip()}")
            return small
        drop -= needed
    raise RuntimeError("icupkg: the kept ICU data items keep naming missing ones")


def reduced(library: Path, cache: Path) -> Path:
    """A copy of `library` (libicudata.so.NN) holding only the data `keep()` keeps (cached)."""
    st = library.stat()
    recipe = (
        f"{sorted(KEEP_LOCALES)}|{sorted(DROP_KINDS)}|{sorted(DROP_TREES)}|{sorted(DROP_ITEMS)}"
    )
    key = hashlib.sha256(
        f"{recipe}|{os.path.realpath(library)}|{st.st_size}|{st.st_mtime_ns}".encode()
    )
    target = cache / key.hexdigest()[:20] / library.name
    if target.exists():
        return target
    _tools()
    symbol, offset, size = _symbol(library)
    with tempfile.TemporaryDirectory(prefix="gdos-icu-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        name = symbol.removesuffix("_dat") + "l.dat"  # icudt73l.dat: little-endian package
        full = work / name
        with open(library, "rb") as f:
            f.seek(offset)
            full.write_bytes(f.read(size))
        small = _package(full, work)
        asm = work / "icudata.S"
        asm.write_text(
            f".section .rodata\n.balign 16\n.globl {symbol}\n.type {symbol}, @object\n"
            f'{symbol}:\n.incbin "{small}"\n.size {symbol}, . - {symbol}\n'
            '.section .note.GNU-stack,"",@progbits\n'
        )
        built = work / library.name
        done = _run(
            [
                "cc",
                "-shared",
                "-nostdlib",
                f"-Wl,-soname,{library.name}",
                "-o",
                str(built),
                str(asm),
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"assembling {library.name} failed: {done.stderr.strip()}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copy2(built, partial)
        os.replace(partial, target)  # whole or absent, for builds running side by side
    return target
