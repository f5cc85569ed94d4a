"""Upload benchmark with the S3 store: a single master's path against the several-masters path.

    .venv/bin/python bench/upload_s3.py                  # 256 MiB, work files in ./bench/.work-s3
    .venv/bin/python bench/upload_s3.py --size-mb 64 --repeat 3

One S3 server (moto's, in its own process: a Python S3, far slower than MinIO, so the figures
compare the two paths, not S3 servers) and two masters on it, each sent the same package as one
tus PATCH and as 64 MiB PATCHes, in turn:
- "SQLite": one master on SQLite (today's path): the body goes to the master's disk, hashed on
  the way; after the last byte it is validated and then sent to the bucket whole.
- "PostgreSQL": a master on PostgreSQL (a throwaway cluster, tests/pg.py), the path of several
  masters: the body goes to the bucket as 8 MiB multipart parts as it arrives; after the last
  byte the parts are assembled, the object is read back to the master's disk (sha256 and CRCs
  taken on the way), validated, and copied inside the bucket to its package key.
"tail" is the time from the client's last byte to the master's answer: what finishing costs
each path (the read-back, for several masters). Columns as in bench/upload.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from bench.upload import MB, Target, build, tus_upload  # noqa: E402
from tests.e2e.test_s3_store import s3_flags  # noqa: E402
from tests.pg import Cluster, find_bindir, missing_reason  # noqa: E402
from tests.support import Master, free_port, port_open, wait_for  # noqa: E402

UPLOADS = {"tus, one PATCH": None, "tus, 64 MiB PATCHes": 64 * MB}


def start_s3() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: port_open(port), 30, what="the S3 server")
    return server, f"127.0.0.1:{port}"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / ".work-s3")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    args = ap.parse_args()
    reason = missing_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    work = args.dir.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    compile_sources()
    bindir = find_bindir()
    assert bindir is not None
    pg = Cluster(bindir).start()
    s3, endpoint = start_s3()
    targets: list[Target] = []
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        src = build(work / "bench.zip", args.size_mb * MB, "1")
        size = src.stat().st_size
        print(f"package: {size / MB:.0f} MiB ({os.uname().nodename}, {os.cpu_count()} cpus)")
        flags = s3_flags(endpoint, "bench")
        targets.append(Target("SQLite", Master(work / "sqlite", extra=flags)))
        pg_flags = ["--db-url", pg.create_database(), *flags]
        targets.append(Target("PostgreSQL", Master(work / "pg", extra=pg_flags)))
        warm = build(work / "warm.zip", 4 * MB, "1")
        for target in targets:
            target.upload(warm, tus_upload, MB)
        warm.unlink()
        for _ in range(args.repeat):
            for name, chunk in UPLOADS.items():
                for target in targets:
                    got = target.upload(src, tus_upload, chunk or size)
                    results.setdefault(f"{name}, {target.label}", []).append(got)
                    time.sleep(0.5)
    finally:
        for target in targets:
            target.master.stop()
        s3.terminate()
        s3.wait(10)
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nload: {os.getloadavg()}")
    print(
        f"{'what':<34} {'best s':>6} {'MB/s':>5} {'RSS +':>7} {'tail':>5} {'master CPU s':>12}"
        "   all runs: s (tail)"
    )
    for name, runs in results.items():
        r = min(runs, key=lambda x: x["seconds"])
        growth = max(x["rss_growth"] for x in runs)
        every = ", ".join(f"{x['seconds']:.2f} ({x['tail']:.2f})" for x in runs)
        print(
            f"{name:<34} {r['seconds']:>6.2f} {size / r['seconds'] / 1e6:>5.0f} "
            f"{growth / MB:>5.1f}MB {r['tail']:>5.2f} {r['cpu']:>12.2f}   {every}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
