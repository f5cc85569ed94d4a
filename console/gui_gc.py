"""Python's cyclic garbage collector, run on the GUI thread only.

CPython collects cycles in whichever thread happens to allocate past the threshold. The console
has a second thread (the event stream's), so a cycle holding a QObject (a page's lambda, a
closed dialog) could be freed there; Qt then destroys the object, and its timers, from a thread
that does not own them ("Timers cannot be stopped from another thread"), which can crash the
process. So automatic collection is switched off and a GUI-thread timer does the same work:
it collects the generation whose threshold the allocation counts passed, as the interpreter
would, just on the right thread.

The youngest generation's threshold is higher than the interpreter's 700: the stream thread's
frames in flight (a thousand events each) keep the count above 700 much of the time, so a
collection came about every second, and each walks every young container, such as the
10,000-entry lists of a large table's new order (a few ms of the GUI thread's tick). Cycles are
rare here; they wait until that many objects were made and kept.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500
YOUNG = 10_000  # objects made and not freed since the last collection before one is due


class GuiGarbageCollector(QObject):
    def __init__(
        self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS, young: int = YOUNG
    ) -> None:
        super().__init__(parent)
        first, *older = gc.get_threshold()
        self.threshold = (max(first, young), *older)
        self.collections = 0
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)

    def start(self) -> None:
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        gc.enable()

    def check(self) -> int:
        """Collect what the interpreter would have by now; returns the generation (-1: none)."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self.threshold[generation]:
                gc.collect(generation)
                self.collections += 1
                return generation
        return -1
