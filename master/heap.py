"""The garbage collector's settings for a long-running master.

CPython's full collection walks every object the collector tracks and holds the event loop
meanwhile; on a master serving a fleet that is hundreds of thousands of objects, and the
default young threshold (700 allocations) promotes the short-lived objects of every burst
(messages, commands, views) into the old generation, which triggers full collections often.
"""

import gc

YOUNG_THRESHOLD = 20_000  # allocations between young collections (CPython's default: 700)


def settle_heap() -> None:
    """Once start-up is done: leave what it built (modules, the app, its routes) out of every
    later collection, and let short-lived objects die before a collection promotes them."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
