"""Upload benchmark: 1 GiB through the resumable (tus) path over loopback, next to `cp`.

    .venv/bin/python bench/upload.py                 # 1 GiB, work files in ./bench/.work
    .venv/bin/python bench/upload.py --size-mb 256 --dir /var/tmp/x
    .venv/bin/python bench/upload.py --before main   # A/B: the uploads also to main's master

In one run, on one disk: `cp` of the package file (the peer, page cache warm as it is for the
uploads), then the same file uploaded to a real master subprocess (`python -m master`, the
`gdos-master` entry point) as one tus PATCH, as 64 MiB tus PATCHes (what a tus client with a
chunk size does), and as a one-shot POST. Printed for context: `cp` with the source evicted
from the page cache, `dd bs=1M` (a copy through user space), `dd oflag=direct` (the disk's
rate for writes that skip the page cache, as the spool's do), `dd conv=fsync` (until the copy
is on disk), sha256 of the file and of the same bytes already in memory (which every upload must
compute, on one core: it cannot be split). The limit: "sha256 limit" is hashlib's time alone
over the same file in the chunks the master's spool hashes, in this process, on one core;
each upload's MB/s is printed over it.

The client sends with sendfile() so it costs next to no CPU (its CPU time is printed). Each
upload is timed until the master answered, i.e. until the package was hashed, validated (every
entry's CRC checked) and registered; "tail" is the part after the client's last byte left. The
master's RSS is sampled every 10 ms (growth = peak over its RSS just before the upload), and
so is its CPU per thread: all threads, the event loop's, the spool's writer and sha256
threads' and a receiving thread's where there is one (by their OS names; a master whose threads have no names shows the busiest other
thread as the sha256 one). "others" is the CPU that processes other than the master and this client used during
the upload (the machine may be shared), in cores. Targets: >= 0.9 x the sha256 limit
(issue 20), >= 200 MB/s and growth < 32 MB (DESIGN.md).

`--before COMMIT` (or a checkout's directory, e.g. /work/main, used as it is) starts a second
master from those sources and uploads to both in turn, each kind of upload to one then the other, so that a change is measured against what it
changes under the same load ("..., before" rows).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from bench.libraries import extract  # noqa: E402
from tests.support import Master  # noqa: E402

MB = 1 << 20
HASH = (
    "import hashlib, sys\n"
    "h = hashlib.sha256()\n"
    "with open(sys.argv[1], 'rb') as f:\n"
    "    while c := f.read(1 << 20): h.update(c)\n"
)


def build(path: Path, size: int, version: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(
            "service.json",
            json.dumps({"name": "bench", "version": version, "entrypoint": "bin/run"}),
        )
        zf.writestr("bin/run", "#!/bin/sh\nsleep 60\n")
        with zf.open(zipfile.ZipInfo("data/blob.bin"), "w", force_zip64=True) as out:
            left = size
            while left > 0:
                n = min(16 * MB, left)
                out.write(os.urandom(n))
                left -= n
    return path


def time_cmd(argv: list[str], dst: Path | None = None) -> float:
    os.sync()  # no write-back of an earlier run competing with this one
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t
    if dst is not None:
        dst.unlink()
    return elapsed


def cold(path: Path) -> None:
    """Drop `path` (only it) from the page cache, so the next read comes from the disk."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sha256_in_memory(size: int) -> float:
    """Seconds hashlib needs for `size` bytes already in memory (1 MiB updates, one core)."""
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    t = time.perf_counter()
    for _ in range(size >> 20):
        h.update(block)
    return time.perf_counter() - t


RECEIVE_CHUNK = 64 << 10  # what the master's HTTP server hands its upload spool at a time


def sha256_limit(path: Path, chunk: int = RECEIVE_CHUNK) -> float:
    """Seconds hashlib spends hashing `path`'s bytes in `chunk`-sized updates on this one core
    (reads not counted): the most an upload, which must hash every byte in order, can reach."""
    h = hashlib.sha256()
    hashing = 0.0
    with open(path, "rb", buffering=0) as f:
        while block := f.read(chunk):
            t = time.perf_counter()
            h.update(block)
            hashing += time.perf_counter() - t
    return hashing


def peer(seconds: float) -> dict[str, Any]:
    nan = float("nan")
    return {
        "seconds": seconds,
        "rss_growth": 0,
        "cpu": nan,
        "loop_cpu": nan,
        "top_cpu": nan,
        "writer_cpu": nan,
        "recv_cpu": nan,
    }


def busy_seconds() -> float:
    """CPU seconds all processes have used since boot (user, nice, system, irq, softirq)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


class Sampler:
    """The master's RSS peak and CPU per thread (its spool threads live only for one body)."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.names: dict[int, str] = {}  # thread id -> its OS name
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self.start = self._threads()
        self.last = dict(self.start)
        self.machine0 = busy_seconds()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _threads(self) -> dict[int, float]:
        threads = {t.id: t.user_time + t.system_time for t in self.proc.threads()}
        for tid in threads:  # a thread names itself once started: read until it has
            if self.names.get(tid, "").startswith("gdos-"):
                continue
            with contextlib.suppress(OSError):
                comm = Path(f"/proc/{self.proc.pid}/task/{tid}/comm").read_text().strip()
                self.names[tid] = comm
        return threads

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)
            with contextlib.suppress(psutil.Error):
                self.last.update(self._threads())

    def finish(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.last.update(self._threads())
        used = {tid: cpu - self.start.get(tid, 0.0) for tid, cpu in self.last.items()}
        loop = used.pop(self.proc.pid, 0.0)  # the event loop's thread: HTTP, the app
        by_name: dict[str, float] = {}
        for tid, cpu in used.items():  # the spool's threads name themselves (one pair per body)
            name = self.names.get(tid, "")
            by_name[name] = by_name.get(name, 0.0) + cpu
        named = "gdos-spool-hash" in by_name
        nan = float("nan")
        return {
            "rss_growth": self.peak - self.base,
            "cpu": loop + sum(used.values()),
            "loop_cpu": loop,
            # the sha256 thread: the busiest other one where the threads have no names
            "top_cpu": by_name["gdos-spool-hash"] if named else max(used.values(), default=0.0),
            "writer_cpu": by_name.get("gdos-spool-writ", 0.0) if named else nan,
            "recv_cpu": by_name.get("gdos-spool-recv", 0.0) if named else nan,
            "machine": busy_seconds() - self.machine0,
        }


class RawHttp:
    """Keep-alive HTTP/1.1 over one socket; bodies go out with sendfile()."""

    def __init__(self, port: int, token: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.token = token

    last_byte = 0.0  # when the last body byte was handed to the kernel

    def request(
        self, method: str, path: str, headers: dict[str, str], body: tuple[Path, int, int] | None
    ) -> tuple[int, dict[str, str], bytes]:
        headers = {"Host": "bench", "Authorization": f"Bearer {self.token}", **headers}
        headers["Content-Length"] = str(body[2] if body else 0)
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        self.sock.sendall((head + "\r\n").encode())
        if body:
            with open(body[0], "rb") as f:
                self.sock.sendfile(f, body[1], body[2])
            self.last_byte = time.perf_counter()
        return self._response()

    def _response(self) -> tuple[int, dict[str, str], bytes]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("the master closed the connection")
            buf += more
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(hdrs.get("content-length", "0"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        return status, hdrs, rest

    def close(self) -> None:
        self.sock.close()


def tus_upload(http: RawHttp, path: Path, chunk: int) -> None:
    size = path.stat().st_size
    status, hdrs, body = http.request(
        "POST",
        "/api/v1/packages/uploads",
        {"Tus-Resumable": "1.0.0", "Upload-Length": str(size)},
        None,
    )
    assert status == 201, body
    location = "/" + hdrs["location"].split("/", 3)[3]
    at = 0
    while at < size:
        n = min(chunk, size - at)
        status, hdrs, body = http.request(
            "PATCH",
            location,
            {
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(at),
                "Content-Type": "application/offset+octet-stream",
            },
            (path, at, n),
        )
        assert status == 204, (status, body)
        at = int(hdrs["upload-offset"])


def one_shot(http: RawHttp, path: Path, chunk: int) -> None:
    status, _, body = http.request(
        "POST",
        "/api/v1/packages",
        {"Content-Type": "application/zip"},
        (path, 0, path.stat().st_size),
    )
    assert status == 201, body


def run(
    master: Master,
    api: httpx.Client,
    token: str,
    path: Path,
    how: Callable[[RawHttp, Path, int], None],
    chunk: int,
) -> dict[str, Any]:
    http = RawHttp(master.port, token)
    os.sync()
    time.sleep(0.5)
    sampler = Sampler(master.pid)
    client0 = resource.getrusage(resource.RUSAGE_THREAD)
    t = time.perf_counter()
    how(http, path, chunk)
    elapsed = time.perf_counter() - t
    client1 = resource.getrusage(resource.RUSAGE_THREAD)
    figures = sampler.finish()
    http.close()
    for pkg in api.get("/api/v1/packages", params={"name": "bench"}).json():
        api.delete(f"/api/v1/packages/{pkg['id']}")
    client = (client1.ru_utime - client0.ru_utime) + (client1.ru_stime - client0.ru_stime)
    others = max(0.0, figures.pop("machine") - figures["cpu"] - client)
    return {
        "seconds": elapsed,
        "tail": t + elapsed - http.last_byte,
        "client_cpu": client,
        "others": others / elapsed,
        "rss_base": sampler.base,
        **figures,
    }


class Target:
    """A master under test, logged in."""

    def __init__(self, label: str, master: Master) -> None:
        self.label = label
        self.master = master
        master.launch()
        self.api = httpx.Client(base_url=master.url, timeout=600)
        self.token = self.api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "test-admin-pw"}
        ).json()["token"]
        self.api.headers["Authorization"] = f"Bearer {self.token}"

    def upload(self, path: Path, how: Callable[[RawHttp, Path, int], None], chunk: int) -> Any:
        return run(self.master, self.api, self.token, path, how, chunk)


UPLOADS: dict[str, tuple[Callable[[RawHttp, Path, int], None], int | None]] = {
    "tus, one PATCH": (tus_upload, None),  # None: the whole file
    "tus, 64 MiB PATCHes": (tus_upload, 64 * MB),
    "one-shot POST": (one_shot, None),
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / ".work")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best is reported")
    ap.add_argument(
        "--before", metavar="COMMIT|DIR", help="also upload to a master of COMMIT (or DIR)"
    )
    args = ap.parse_args()
    work = args.dir.absolute()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    compile_sources()
    targets: list[Target] = []
    try:
        src = build(work / "bench.zip", args.size_mb * MB, "1")
        size = src.stat().st_size
        print(
            f"package: {size / MB:.0f} MiB in {work} ({os.uname().nodename}, {os.cpu_count()} cpus)"
        )
        targets.append(Target("", Master(work / "master")))
        if args.before:
            if Path(args.before).is_dir():  # another checkout: used as it is, never written
                tree = Path(args.before).absolute()
            else:
                tree = extract(args.before, work / "before")
                compile_sources(tree)
            env = {"PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"}
            if tree == Path(args.before).absolute():
                env["PYTHONDONTWRITEBYTECODE"] = "1"
            targets.append(Target(", before", Master(work / "master-before", env=env)))
            print(f"before: {args.before}; after: this checkout")
        try:
            warm = build(work / "warm.zip", 4 * MB, "1")
            for target in targets:  # imports, caches, first allocations
                target.upload(warm, tus_upload, 1 * MB)
            warm.unlink()

            results: dict[str, list[dict[str, Any]]] = {
                "cp": [],
                "cp, source not cached": [],
                "dd bs=1M": [],
                "dd bs=2M oflag=direct": [],
                "dd bs=1M conv=fsync": [],
                "sha256 of the file": [],
                "sha256 in memory": [],
                "sha256 limit": [],
            }
            for name in UPLOADS:
                for target in targets:
                    results[name + target.label] = []
            turn = -1
            for _ in range(args.repeat):
                copy = work / "copy.zip"
                results["cp"].append(peer(time_cmd(["cp", str(src), str(copy)], copy)))
                cold(src)
                results["cp, source not cached"].append(
                    peer(time_cmd(["cp", str(src), str(copy)], copy))
                )
                results["dd bs=1M"].append(
                    peer(time_cmd(["dd", f"if={src}", f"of={copy}", "bs=1M"], copy))
                )
                results["dd bs=2M oflag=direct"].append(
                    peer(time_cmd(["dd", f"if={src}", f"of={copy}", "bs=2M", "oflag=direct"], copy))
                )
                results["dd bs=1M conv=fsync"].append(
                    peer(time_cmd(["dd", f"if={src}", f"of={copy}", "bs=1M", "conv=fsync"], copy))
                )
                results["sha256 of the file"].append(
                    peer(time_cmd([sys.executable, "-c", HASH, str(src)]))
                )
                results["sha256 in memory"].append(peer(sha256_in_memory(size)))
                results["sha256 limit"].append(peer(sha256_limit(src)))
                for name, (how, chunk) in UPLOADS.items():
                    turn += 1  # which master goes first alternates
                    for target in targets[turn % 2 :] + targets[: turn % 2]:
                        results[name + target.label].append(target.upload(src, how, chunk or size))
            base_rss = results["tus, one PATCH"][0]["rss_base"]
        finally:
            for target in targets:
                target.master.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in results.items()}
    cp_rate = size / best["cp"]["seconds"] / 1e6
    print(f"\nmaster RSS before uploads: {base_rss / MB:.0f} MiB; load: {os.getloadavg()}")
    print(
        f"{'what':<30} {'best s':>6} {'MB/s':>5} {'vs cp':>5} {'RSS +':>7} {'tail':>5} "
        f"{'master CPU s: all':>17} {'loop':>5} {'recv':>5} {'write':>5} {'hash':>5} {'client':>6} "
        f"{'others':>6}"
        "   all runs: s (others)"
    )
    for name, r in best.items():
        rate = size / r["seconds"] / 1e6
        runs = f"median {statistics.median(x['seconds'] for x in results[name]):.2f}: " + ", ".join(
            f"{x['seconds']:.2f}" + (f" ({x['others']:.1f})" if "others" in x else "")
            for x in results[name]
        )
        line = f"{name:<30} {r['seconds']:>6.2f} {rate:>5.0f} {rate / cp_rate:>5.2f}"
        if "tail" in r:
            growth = max(x["rss_growth"] for x in results[name])
            line += (
                f" {growth / MB:>5.1f}MB {r['tail']:>5.2f} {r['cpu']:>17.2f} {r['loop_cpu']:>5.2f}"
                f" {r['recv_cpu']:>5.2f} {r['writer_cpu']:>5.2f} {r['top_cpu']:>5.2f}"
                f" {r['client_cpu']:>6.2f}"
                f" {r['others']:>6.2f}"
            )
        else:
            line += " " * 69
        print(f"{line}   {runs}")
    sha_rate = size / best["sha256 limit"]["seconds"] / 1e6
    print(
        f"\nlimit: sha256 of the same bytes on one core ({RECEIVE_CHUNK >> 10} KiB updates) "
        f"{sha_rate:.0f} MB/s; upload / limit: "
        + ", ".join(
            f"{name} {size / best[name]['seconds'] / 1e6 / sha_rate:.2f}"
            for name in results
            if name in best and "tail" in best[name]
        )
    )
    tus_best = best["tus, one PATCH"]
    rate = size / tus_best["seconds"] / 1e6
    growth = max(
        x["rss_growth"] for x in results["tus, one PATCH"] + results["tus, 64 MiB PATCHes"]
    )
    ok = rate >= 0.9 * sha_rate and rate >= 200 and growth < 32 * MB
    print(
        f"\ntargets: >= 0.9 x the sha256 limit [{rate / sha_rate:.2f}], >= 200 MB/s [{rate:.0f}], "
        f"RSS growth < 32 MB [{growth / MB:.1f}] -> {'met' if ok else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
