"""CPU of one hello batch on real SQLite (issue 23): what a reconnect storm costs the master's loop.

    .venv/bin/python -m bench.hello_batch --base /work/main      # this tree, then the other

In a child process per tree and per round (alternated): a fresh SQLite database with N nodes x
M instances left `unknown` (as a master restart leaves them), then `HelloQueue.apply` of every
node's hello (all `running`) in slices of S nodes, as the master applies a reconnecting fleet's
hellos one slice per turn of its event loop. Prints CPU ms per slice (the loop held once) and
µs per instance row (`time.process_time`: a loaded machine's waits for a core are not counted).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def measure(nodes: int, per_node: int, slice_nodes: int, folder: Path) -> dict[str, float]:
    """In this process, with the `master` package of whichever tree is on sys.path."""
    import master

    print(f"master from {Path(master.__file__).parent}", file=sys.stderr)
    from master.db import models
    from master.db.session import Database
    from master.hub import Hub
    from master.services.directory import Directory
    from master.services.hellos import HelloQueue
    from master.services.instance_feed import InstanceFeed
    from master.services.reports import ReportQueue
    from protocol.messages import Hello, HostInfo, InstanceReport
    from protocol.states import InstanceState

    db = Database(f"sqlite:///{folder / (uuid.uuid4().hex + '.db')}")
    db.migrate()
    hub = Hub()
    Directory(hub)  # the hub listener a master always has
    feed = InstanceFeed(hub)
    queue = HelloQueue(db, feed, ReportQueue(db, feed))
    with db.session() as s:
        system = models.System(name="bench")
        made = [models.Node(secret_hash=uuid.uuid4().hex) for _ in range(nodes)]
        s.add(system)
        s.add_all(made)
        s.flush()
        rows = {
            n.id: [
                models.Instance(
                    system_id=system.id,
                    node_id=n.id,
                    name=f"i{n.id}-{k}",
                    state="unknown",
                    desired_state="running",
                )
                for k in range(per_node)
            ]
            for n in made
        }
        s.add_all([r for per in rows.values() for r in per])
        s.commit()
        ids = {node_id: [r.id for r in per] for node_id, per in rows.items()}
    hellos = [
        (
            node_id,
            Hello(
                agent_version="bench",
                host=HostInfo(hostname=node_id),
                instances=[
                    InstanceReport(iid, InstanceState.RUNNING, pid=100 + k, started_at=1.7e9 + k)
                    for k, iid in enumerate(per)
                ],
            ),
        )
        for node_id, per in ids.items()
    ]
    began = time.process_time()
    for first in range(0, nodes, slice_nodes):
        queue.apply(hellos[first : first + slice_nodes], {})
    cpu = time.process_time() - began
    db.dispose()
    slices = -(-nodes // slice_nodes)
    return {"ms_per_slice": cpu / slices * 1e3, "us_per_row": cpu / (nodes * per_node) * 1e6}


def run_tree(root: Path, args: argparse.Namespace, slice_nodes: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,  # as a script: `-m` would put this tree first on sys.path
            "--child",
            "--nodes",
            str(args.nodes),
            "--per-node",
            str(args.per_node),
            "--slice",
            str(slice_nodes),
            "--folder",
            args.folder,
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=400)
    p.add_argument("--per-node", type=int, default=20)
    p.add_argument("--slice", type=int, default=25, help="nodes per slice for this tree")
    p.add_argument("--base-slice", type=int, default=100, help="nodes per slice for --base")
    p.add_argument("--base", default=None, help="the other source tree (e.g. /work/main)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--folder", default=f"/tmp/gdos-hello-batch-{os.getpid()}")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    Path(args.folder).mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(measure(args.nodes, args.per_node, args.slice, Path(args.folder))))
        return
    trees = [("this", ROOT, args.slice)]
    if args.base:
        trees.append(("base", Path(args.base).resolve(), args.base_slice))
    seen: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in trees}
    for r in range(args.rounds):
        for name, root, slice_nodes in trees if r % 2 == 0 else trees[::-1]:
            result = run_tree(root, args, slice_nodes)
            seen[name].append(result)
            print(f"{name}: {json.dumps(result)} (load {os.getloadavg()[0]:.1f})", flush=True)
    summary: dict[str, Any] = {
        name: {k: round(statistics.median(x[k] for x in results), 1) for k in results[0]}
        for name, results in seen.items()
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
