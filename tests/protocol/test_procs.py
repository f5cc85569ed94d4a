"""The child side of `tied_to_parent` runs between fork and exec: it must need no lock."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from protocol import procs


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_the_child_side_neither_imports_nor_loads_a_library(monkeypatch):
    """An import or a dlopen in the child of a process with threads can wait forever on a
    lock another thread held at the fork; so everything is loaded before, in the parent."""
    preexec = procs.tied_to_parent()
    assert preexec is not None

    def no_loading(*_args: object, **_kw: object) -> None:
        raise AssertionError("a library loaded in the child")

    monkeypatch.setattr(ctypes, "CDLL", no_loading)
    monkeypatch.setitem(sys.modules, "ctypes", None)  # an import in the child fails
    done = subprocess.run(["true"], preexec_fn=preexec, timeout=30)
    assert done.returncode == 0
