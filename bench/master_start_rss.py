"""A started master's RSS with no agent, on SQLite and on PostgreSQL + S3, this tree and `--base`.

    .venv/bin/python -m bench.master_start_rss --base /work/wt/base11 --rounds 2

What a master costs before any node connects: the interpreter, its imports and its start, on
each backend (PostgreSQL + S3 as bench.cluster's masters: a throwaway PostgreSQL 15 cluster, a
fresh database per run, migrated by the master, and moto's S3 server). Each run starts a master,
waits for `/healthz` and `--settle` seconds, then reads `/proc/<pid>/smaps_rollup` and the heap
hook's report (glibc's totals, the modules imported). Bytes, not time: a loaded machine does
not move them. Prints one line per run and the modules a PostgreSQL master imports beyond a
SQLite one, by top-level package.
"""

import argparse
import collections
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from bench import compile_sources
from bench.cluster import BUCKET, S3_KEYS, postgres, s3_server
from bench.fleet_bench import PY, ROOT, free_port, master_args
from bench.master_memory import HOOK, smaps_rollup


def started(root: Path, work: Path, extra: list[str], settle: float) -> dict[str, Any]:
    """RSS (MiB: all, anonymous, file-backed), glibc's arenas and the modules of a master
    started from `root` with `extra` arguments, `settle` s after it answered `/healthz`."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="master-", dir=work))
    report = data / "heap.json"
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{HOOK}",
        "GDOS_BENCH_HEAP_REPORT": str(report),
    }
    argv = master_args(port, data / "master", *[a.replace("{url}", url) for a in extra])
    with open(data / "master.log", "ab") as log:
        master = subprocess.Popen([PY, *argv], cwd=root, env=env, stdout=log, stderr=log)
    try:
        for _ in range(1200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the master did not start (see {data / 'master.log'})")
        time.sleep(settle)
        smaps = smaps_rollup(master.pid)
        os.kill(master.pid, signal.SIGUSR1)
        for _ in range(100):
            if report.exists():
                break
            time.sleep(0.2)
        heap = json.loads(report.read_text())
    finally:
        master.terminate()
        master.wait()
    malloc = heap["mallinfo2"]
    return {
        "rss": smaps["Rss"],
        "anon": smaps["Anonymous"],
        "file": round(smaps["Rss"] - smaps["Anonymous"], 1),
        "malloc_in_use": round(malloc.get("uordblks", 0) / 2**20, 1),
        "malloc_free": round(malloc.get("fordblks", 0) / 2**20, 1),
        "modules": heap["modules"],
    }


def new_database(db_url: str, name: str) -> str:
    """An empty database `name` on the server of `db_url`; its URL."""
    import psycopg

    url = make_url(db_url)
    with psycopg.connect(
        url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True
    ) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.set(database=name).render_as_string(hide_password=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=None, help="another source tree, run in turn")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--settle", type=float, default=8.0, help="seconds after /healthz")
    args = p.parse_args()
    trees = [("tree", ROOT)] + ([("base", Path(args.base).resolve())] if args.base else [])
    for _, root in trees:
        compile_sources(root)
    work = Path(tempfile.mkdtemp(prefix="gdos-master-start-rss-"))
    store = ["--store-type", "minio", "--minio-bucket", BUCKET]
    store += ["--minio-ak", S3_KEYS[0], "--minio-sk", S3_KEYS[1]]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    print(f"load {os.getloadavg()[0]:.1f}", flush=True)
    with postgres(None) as db_url, s3_server(work) as s3:
        for r in range(args.rounds):
            for label, root in trees if r % 2 == 0 else trees[::-1]:
                db = new_database(db_url, f"start_{label}_{r}")
                pg = ["--db-url", db, "--advertise-url", "{url}", "--minio-endpoint", s3, *store]
                for backend, extra in (("postgres", pg), ("sqlite", [])):
                    one = started(root, work, extra, args.settle)
                    runs[label, backend].append(one)
                    shown = {k: v for k, v in one.items() if k != "modules"}
                    print(f"{label} {backend}: {shown}, modules {len(one['modules'])}", flush=True)
    for label, _ in trees:
        pg_mods, sq_mods = (
            runs[label, "postgres"][-1]["modules"],
            runs[label, "sqlite"][-1]["modules"],
        )
        extra_mods = collections.Counter(m.split(".")[0] for m in set(pg_mods) - set(sq_mods))
        print(f"{label}: a PostgreSQL + S3 master's modules beyond SQLite's: {dict(extra_mods)}")
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
