"""Thread pools whose threads all exist before the event loop needs them.

`ThreadPoolExecutor` starts a thread on `submit` when none is idle, and `Thread.start()` waits
until the new thread has run. On a host saturated by the services a batch is starting, that
wait blocked the agent's event loop for up to 0.7 s (bench/RESULTS.md, Issue 9). A pool whose
threads were started ahead never grows under load.
"""

import threading
from concurrent.futures import ThreadPoolExecutor


def prestart(pool: ThreadPoolExecutor, workers: int) -> None:
    """Start `workers` threads of `pool` now (it must have at least that many, none busy)."""
    ready = threading.Barrier(workers + 1)
    for _ in range(workers):
        pool.submit(ready.wait)  # each blocks a thread until all have started
    ready.wait(timeout=30)
