"""The processes GDOS must never adopt or signal: PID 1, kernel threads, the agent and its
ancestors. Signalling any of them would hit the host itself."""

import contextlib
import os
import sys

import psutil

from protocol.errors import ErrorCode, GdosError

KTHREADD = 2  # Linux: the parent of every kernel thread


def protected_pids() -> set[int]:
    """PID 1, this agent and its ancestors: signalling any of them would hit the host itself."""
    pids = {1, os.getpid()}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents())
    return pids


def is_kernel_thread(pid: int, ppid: int | None) -> bool:
    return sys.platform.startswith("linux") and (pid == KTHREADD or ppid == KTHREADD)


def why_protected(proc: psutil.Process, protected: set[int] | None = None) -> str | None:
    """Why GDOS must leave this process alone, or None when it may take it."""
    if proc.pid == 1:
        return "it is PID 1, the node's init process"
    if proc.pid == os.getpid():
        return "it is this GDOS agent"
    if proc.pid in (protected if protected is not None else protected_pids()):
        return "it is an ancestor of this GDOS agent"
    try:
        ppid = proc.ppid()
    except psutil.Error:
        ppid = None
    if is_kernel_thread(proc.pid, ppid):
        return "it is a kernel thread"
    return None


def guard_tree(procs: list[psutil.Process], name: str) -> None:
    """Refuse to signal a tree that holds a protected process (checked again at every stop:
    what an adopted process's tree holds can change after the adoption)."""
    protected = protected_pids()
    for proc in procs:
        why = why_protected(proc, protected)
        if why is not None:
            raise GdosError(
                ErrorCode.FORBIDDEN,
                f"refusing to signal the processes of {name}: process {proc.pid} in its tree "
                f"must not be signalled ({why})",
                {"pid": proc.pid},
            )
