"""Cross-master command latency: two masters on one PostgreSQL 15 (a throwaway cluster, as the
tests make) and one moto S3 bucket, one real agent connected to master B; the same agent
command (`list_logs`, through `GET /api/v1/instances/{id}/logs`) asked of B (local) and of A
(A -> commands table + bus -> B -> agent -> B -> bus -> A), sequentially.

    .venv/bin/python bench/cross_master.py [--requests 300] [--master-root DIR] [--stages]

Prints the median and p99 of each, and of their difference (the routing's own cost).
`--master-root` runs the masters from another checkout (an A/B against main); `--stages`
runs them at log level debug and prints where a routed command's time goes, step by step,
from the origin's and the target's timestamps (this checkout's masters log them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Collection, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.test_lifecycle import deploy_hello  # noqa: E402
from tests.e2e.test_s3_store import s3_flags  # noqa: E402
from tests.pg import Cluster, find_bindir  # noqa: E402
from tests.support import Agent, Api, Master, Proc, free_port, wait_for  # noqa: E402


def timed(api: Api, path: str, n: int) -> list[float]:
    took = []
    for _ in range(n):
        began = time.perf_counter()
        api.get(path)
        took.append((time.perf_counter() - began) * 1000)
    return sorted(took)


def summary(name: str, ms: list[float]) -> str:
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{name}: median {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms"


STAGES = (
    ("API call -> origin's send (bench.cluster)", "api.called", "o.began"),
    ("origin: holder looked up (node row)", "o.asked", "o.linked"),
    ("origin: holder known -> send", "o.linked", "o.began"),
    ("origin: events (+ row) committed", "o.began", "o.written"),
    ("origin: row inserted + NOTIFY", "o.written", "o.queued"),
    ("NOTIFY -> target's listener", "o.queued", "t.signalled"),
    ("target: task scheduled", "t.signalled", "t.began"),
    ("target: events read", "t.began", "t.read"),
    ("target: claimed", "t.read", "t.claimed"),
    ("target: sent -> agent has it (bench.cluster)", "t.claimed", "agent.received"),
    ("target: agent's reply", "t.claimed", "t.replied"),
    ("target: answer written + NOTIFY", "t.replied", "t.answered"),
    ("origin: answer collected", "t.answered", "o.answered"),
)


def stage_marks(logs: list[Path]) -> dict[str, dict[str, float]]:
    """Per routed command, the wall-clock marks both masters logged (o.* origin, t.* target)."""
    found: dict[str, dict[str, float]] = {}
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            _, hit, rest = line.partition("routed ")
            if not hit or (" origin: " not in rest and " target: " not in rest):
                continue
            cmd_id, side, marks = rest.split(" ", 2)
            words = marks.split()
            if len(words) % 2 or not all(_is_float(w) for w in words[1::2]):
                continue
            mine = found.setdefault(cmd_id, {})
            for name, value in zip(words[::2], words[1::2], strict=True):
                mine[f"{side[0]}.{name}"] = float(value)
    return {cmd_id: marks for cmd_id, marks in found.items() if len(marks) >= 10}


def _is_float(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def stage_figures(marks: Iterable[dict[str, float]]) -> dict[str, list[float]]:
    """Per step, [median, p99] in ms over the commands both masters logged."""
    out: dict[str, list[float]] = {}
    for name, a, b in STAGES:
        ms = sorted((m[b] - m[a]) * 1000 for m in marks if a in m and b in m)
        if ms:
            p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
            out[name] = [round(statistics.median(ms), 2), round(p99, 2)]
    return out


def stage_table(marks: Collection[dict[str, float]]) -> str:
    lines = [f"stages of {len(marks)} routed commands (ms): median / p99"]
    for name, (median, p99) in stage_figures(marks).items():
        lines.append(f"  {name:36s} {median:7.2f} / {p99:7.2f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--master-root", default=None, help="another checkout's masters")
    parser.add_argument("--stages", action="store_true", help="log and print each step")
    args = parser.parse_args()
    from moto.server import ThreadedMotoServer

    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL server binaries not found (scripts/system-deps.sh)")
        return 1
    root = Path(tempfile.mkdtemp(prefix="gdos-xm-"))
    cluster = Cluster(bindir).start()
    s3_port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    masters: list[Master] = []
    agent: Agent | None = None
    try:
        url = cluster.create_database()
        flags = ["--db-url", url, *s3_flags(f"127.0.0.1:{s3_port}", "bench")]
        if args.stages:
            flags += ["--log-level", "debug"]
        env = {}
        if args.master_root:  # read only: no bytecode written there
            env = {
                "PYTHONPATH": str(Path(args.master_root).resolve()),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        masters = [Master(root / name, extra=flags, env=env) for name in ("a", "b")]
        a, b = masters
        Proc.start(b)
        wait_for(b._healthy, 90, what="master b")
        Proc.start(a)
        wait_for(a._healthy, 90, what="master a")
        api_a, api_b = a.api(), b.api()
        agent = Agent(b, root / "agent", token=b.join_token)
        node_id = agent.start_and_wait(api_b)
        id_b = (b.data_dir / "master-id").read_text().strip()
        wait_for(lambda: api_a.get(f"/nodes/{node_id}")["master_id"] == id_b, 30, what="peer")
        iid = deploy_hello(api_b, node_id, root, free_port(), name="bench")["id"]
        path = f"/instances/{iid}/logs"
        timed(api_a, path, 20)  # warm both paths
        timed(api_b, path, 20)
        local = timed(api_b, path, args.requests)
        routed = timed(api_a, path, args.requests)
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, cores {os.cpu_count()}")
        print(summary("through B (local)", local))
        print(summary("through A (routed via B)", routed))
        cost = statistics.median(routed) - statistics.median(local)
        print(f"routing's own cost: median {cost:.1f} ms")
        if args.stages:
            marks = stage_marks([m.data_dir / "master.log" for m in masters])
            print(stage_table(marks.values()))
    finally:
        if agent is not None:
            agent.stop()
        for m in masters:
            m.stop()
        s3.stop()
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
