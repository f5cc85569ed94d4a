"""The agent's own CPU for a stop-all and a start-all of N instances: one Supervisor in process
(no master, no socket), bench/batch.py's program as N real processes, real state file.

    .venv/bin/python -m bench.stop_path                     # 10 instances, 15 rounds
    .venv/bin/python -m bench.stop_path --base /tmp/main    # another checkout beside it, alternated

CPU is this process's (every thread: the event loop, the state file's writer, the spawner), from
the call until 0.8 s after every stop or start returned (the saves that follow included, a
`stopped` saved half a second later too). The signalled programs' own exits are not counted.
Prints the median per variant, in ms per operation of N instances, and one JSON line each.
"""

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


async def measure(n: int, rounds: int) -> dict[str, float]:
    """Runs with the agent package of the tree first on sys.path (see `main`)."""
    from agent.executor.supervisor import Supervisor
    from agent.state import StateFile
    from bench.batch import gdos_package
    from protocol.messages import InstanceSpec, PackageRef

    base = Path(tempfile.mkdtemp(prefix="gdos-stop-path-"))
    pkg = gdos_package(base)

    async def fetch(ref: PackageRef, dest: Path) -> None:
        shutil.copy(pkg, dest)

    work = base / "work"
    work.mkdir()
    sup = Supervisor(work, StateFile(work / "state.json"), fetch, lambda r: None)
    ref = PackageRef(id="p", name="prog", version="1.0.0", sha256="0" * 64, size=1, url="/x")
    ids = [f"i{i:04d}" for i in range(n)]
    for i in ids:
        await sup.deploy(InstanceSpec(instance_id=i, name=f"p-{i}", package=ref))
    cpu: dict[str, list[float]] = {"start": [], "stop": [], "stop_sys": []}
    try:
        for _ in range(rounds):
            for kind in ("start", "stop"):
                await asyncio.sleep(0.3)
                u0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
                await asyncio.gather(
                    *((sup.start if kind == "start" else sup.stop)(i) for i in ids)
                )
                await asyncio.sleep(0.8)  # the saves that follow, a deferred one included
                cpu[kind].append((time.process_time() - c0) * 1000)
                if kind == "stop":
                    u1 = resource.getrusage(resource.RUSAGE_SELF)
                    cpu["stop_sys"].append((u1.ru_stime - u0.ru_stime) * 1000)
    finally:
        await asyncio.gather(*(sup.stop(i) for i in ids), return_exceptions=True)
        await sup.close()
        shutil.rmtree(base, ignore_errors=True)
    return {k: statistics.median(v) for k, v in cpu.items()}


def run_variant(script: str, root: Path, n: int, rounds: int) -> dict[str, Any]:
    """`script`'s measure in a process of its own, with the packages of the tree at `root`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)])}
    argv = [sys.executable, script, "--child", "--n", str(n), "--rounds", str(rounds)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=root, env=env)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def alternated(
    doc: str,
    script: str,
    measure: Callable[[int, int], Awaitable[dict[str, float]]],
    n: int,
    rounds: int,
    line: Callable[[dict[str, Any], int], str],
) -> int:
    """The command line of an in-process CPU bench: `measure` of this tree, or of this tree and
    `--base`'s in turn, each run in a process of its own; `line` prints one run."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=n, help="instances")
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--base", type=Path, help="another checkout, measured in turn with this one")
    p.add_argument("--turns", type=int, default=3, help="alternations with --base")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.n, args.rounds))))  # type: ignore[arg-type]
        return 0
    variants = [("this", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    seen: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for _ in range(args.turns if args.base else 1):
        for name, root in variants:
            load = os.getloadavg()[0]
            got = run_variant(script, root, args.n, args.rounds)
            seen[name].append(got)
            print(f"{name}: {line(got, args.n)} (load {load:.1f})", flush=True)
    for name, runs in seen.items():
        summary = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
        print(json.dumps({"variant": name, "n": args.n, "rounds": args.rounds, **summary}))
    return 0


def main() -> int:
    return alternated(
        __doc__ or "",
        __file__,
        measure,
        10,  # one agent of batch.py
        15,
        lambda got, n: (
            f"stop {got['stop']:.2f} ms (sys {got['stop_sys']:.2f}), "
            f"start {got['start']:.2f} ms per {n} instances"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
