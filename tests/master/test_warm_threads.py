"""The master imports anyio's asyncio backend and starts a worker thread before it serves: done
lazily, the first API call after a restart did both with the loop held, in the reconnect storm."""

import subprocess
import sys

CHECK = """
import asyncio, sys, threading
import master.serving
backend = "anyio._backends._asyncio"
assert backend not in sys.modules, "imported already: the check proves nothing"

async def main() -> None:
    threads = threading.active_count()
    await master.serving.warm_worker_threads()
    assert backend in sys.modules
    assert threading.active_count() > threads, "no worker thread started"

asyncio.run(main())
"""


def test_worker_threads_are_warm_before_serving() -> None:
    # A fresh interpreter: this one may have imported the backend already.
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
