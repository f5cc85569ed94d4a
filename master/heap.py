"""The garbage collector's settings for a long-running master.

CPython's full collection walks every object the collector tracks and holds the event loop
meanwhile. A third of a master's objects are built at start-up (modules, the app, its routes)
and live as long as the process: walking them again at every full collection is waste.
"""

import gc


def settle_heap() -> None:
    """Once start-up is done: leave what it built out of every later collection. It lives as
    long as the process, so nothing is leaked."""
    gc.collect()
    gc.freeze()
