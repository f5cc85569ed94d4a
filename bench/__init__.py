"""Benchmarks (see bench/RESULTS.md) and the fleet simulator."""

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_sources(root: Path = ROOT) -> None:
    """Write the bytecode of the code under test first, as an installed or frozen agent has it.

    Without .pyc files (a fresh checkout, or PYTHONDONTWRITEBYTECODE set) every agent and
    master compiles its modules at each start: ~1 MiB more RSS per agent and a slower start,
    which the figures would then include (a 09:35 A/B on 2026-11-28 did).
    """
    for package in ("agent", "master", "protocol"):
        compileall.compile_dir(root / package, quiet=1)
