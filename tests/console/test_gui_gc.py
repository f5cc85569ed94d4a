"""Cycles holding QObjects are freed on the GUI thread, never on the stream thread."""

from __future__ import annotations

import gc
import threading
import weakref

from PySide6.QtCore import QObject, QTimer

from console.gui_gc import GuiGarbageCollector
from tests.console.conftest import _app


class Holder(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.start(60_000)
        self.me = self  # a cycle: only the cyclic collector can free it


def test_a_cycle_with_a_running_timer_is_freed_by_the_gui_thread_only():
    _app()
    collector = GuiGarbageCollector()
    collector.start()
    try:
        assert not gc.isenabled()
        holder = Holder()
        ref = weakref.ref(holder)
        del holder

        def churn() -> None:  # what the stream thread does all day: allocate
            junk = []
            for _ in range(50_000):
                d: dict[str, object] = {}
                d["self"] = d
                junk.append(d)

        t = threading.Thread(target=churn)
        t.start()
        t.join()
        assert ref() is not None, "freed by another thread's allocations"
        assert gc.get_count()[0] > collector.threshold[0]
        assert collector.check() >= 0
        while collector.check() >= 0:  # the older generations, as their counts pass
            pass
        gc.collect()  # whatever generation still holds it, collected here on the GUI thread
        assert ref() is None
    finally:
        collector.stop()
    assert gc.isenabled()


def test_objects_in_flight_do_not_make_each_check_collect():
    _app()
    collector = GuiGarbageCollector()
    collector.start()
    try:
        gc.collect()  # every count back to 0
        in_flight = [{"frame": [n]} for n in range(1_000)]  # a stream frame being handed out
        assert gc.get_count()[0] > 700  # the interpreter's own threshold would collect now
        assert collector.check() == -1
        kept = [[n] for n in range(collector.threshold[0])]  # made and kept: a collection is due
        assert collector.check() == 0
        del in_flight, kept
    finally:
        collector.stop()
