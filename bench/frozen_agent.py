"""The one-file (PyInstaller) agent next to the same agent run from source.

    .venv/bin/python bench/frozen_agent.py [--runs 5] [--idle 5]

Figures: file size of the one-file agent; cold start to `hello` accepted (from exec until the
master publishes the node as online: enrolment with a join token + WebSocket + hello, a fresh
work dir each run, frozen and source runs alternating); idle RSS after the node is online
(the frozen agent is two processes, the bootloader and the Python it starts: both counted).
Builds the frozen programs first (tests/frozen_build.py) when build/frozen-cache has none for the
current sources. bench/frozen.py runs the same agent comparison beside the console's figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import compile_sources  # noqa: E402
from tests.frozen_build import agent_processes, frozen_agent  # noqa: E402
from tests.support import Api, Master, child_env, wait_for  # noqa: E402


class OnlineWatch:
    """Time of arrival of every `node ... online` event on the console event stream."""

    def __init__(self, master: Master, token: str) -> None:
        from websockets.sync.client import connect

        url = master.url.replace("http://", "ws://") + "/api/v1/events"
        self.ws = connect(url, additional_headers={"Authorization": f"Bearer {token}"})
        self.online: dict[str, float] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                now = time.monotonic()
                event = json.loads(raw)
                data = event.get("data") or {}
                if event.get("topic") == "node" and data.get("status") == "online":
                    with self.lock:
                        self.online.setdefault(data["id"], now)
        except Exception:
            pass

    def when(self, node_id: str) -> float | None:
        with self.lock:
            return self.online.get(node_id)

    def close(self) -> None:
        self.ws.close()


def rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


def one_run(
    kind: str, program: list[str], master: Master, watch: OnlineWatch, idle: float, root: Path
) -> dict[str, Any]:
    work = root / f"{kind}-{time.monotonic_ns()}"
    work.mkdir()
    argv = [*program, "--master", master.url, "--work-dir", str(work), "--token", master.join_token]
    log = open(work.parent / f"{work.name}.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        cred = work / "agent-credential.json"
        wait_for(cred.exists, 120, 0.005, what=f"{kind} enrolment")
        node_id = json.loads(cred.read_text())["node_id"]
        seen = wait_for(lambda: watch.when(node_id), 120, 0.005, what=f"{kind} online")
        startup = seen - t0
        time.sleep(idle)
        pids = agent_processes(proc.pid) if kind == "frozen" else [proc.pid]
        rss = rss_of(pids)
        main_rss = rss_of(pids[-1:])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    return {"startup": startup, "rss": rss, "main_rss": main_rss, "processes": len(pids)}


def version_time(program: list[str], runs: int) -> float:
    """Median seconds for `--version`: unpacking (frozen) and interpreter start, no network."""
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([*program, "--version"], env=child_env(), capture_output=True, check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def machine() -> str:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    model = sh("lscpu | grep 'Model name' | sed 's/Model name: *//'")
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{sh('date -u')}; {os.cpu_count()} CPUs ({model}), {mem:.0f} GiB "
        f"({psutil.virtual_memory().available / 2**30:.0f} GiB available); "
        f"Python {platform.python_version()}; uptime: {sh('uptime')}"
    )


def main() -> int:
    compile_sources()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--idle", type=float, default=5.0, help="seconds online before RSS is read")
    args = ap.parse_args()

    before = machine()
    t_build = time.monotonic()
    binary = frozen_agent()
    build_s = time.monotonic() - t_build
    size = binary.stat().st_size
    programs = {"frozen": [str(binary)], "source": [sys.executable, "-m", "agent"]}

    versions = {kind: version_time(program, args.runs) for kind, program in programs.items()}
    root = Path(tempfile.mkdtemp(prefix="gdos-bench-frozen-"))
    master = Master(root / "master", env={})
    master.launch()
    api = Api.login(master.url)
    watch = OnlineWatch(master, api.token or "")
    results: dict[str, list[dict[str, Any]]] = {"frozen": [], "source": []}
    try:
        for _ in range(args.runs):
            for kind, program in programs.items():  # alternate, so load drifts hit both alike
                results[kind].append(one_run(kind, program, master, watch, args.idle, root))
    finally:
        watch.close()
        api.close()
        master.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"machine at start: {before}")
    print(f"machine at end  : {machine()}")
    print(
        f"one-file agent: {binary} ({size / 2**20:.1f} MiB; build or cache lookup {build_s:.0f} s)"
    )
    print(f"{args.runs} runs each, alternating; idle RSS read {args.idle:.0f} s after online\n")
    print(
        "| agent | start to hello accepted, median (min-max) | `--version`, median "
        "| idle RSS, total | of which the agent's Python |"
    )
    print("| --- | --- | --- | --- | --- |")
    for kind, runs in results.items():
        starts = [r["startup"] * 1000 for r in runs]
        rss = statistics.median(r["rss"] for r in runs) / 2**20
        main_rss = statistics.median(r["main_rss"] for r in runs) / 2**20
        procs = runs[0]["processes"]
        print(
            f"| {kind} | {statistics.median(starts):.0f} ms ({min(starts):.0f}-{max(starts):.0f}) "
            f"| {versions[kind] * 1000:.0f} ms "
            f"| {rss:.1f} MiB ({procs} process{'es' if procs > 1 else ''}) | {main_rss:.1f} MiB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
