"""The processes GDOS must never adopt or signal: PID 1, kernel threads, the agent and its
ancestors. Signalling any of them would hit the host itself."""

import contextlib
import os
import select
import sys
import threading
from dataclasses import dataclass

import psutil

from protocol.errors import ErrorCode, GdosError

KTHREADD = 2  # Linux: the parent of every kernel thread


def protected_pids() -> frozenset[int]:
    """PID 1, this agent and its ancestors: signalling any of them would hit the host itself.

    Checked before every stop, so read once and kept: the ancestors change only when one of them
    exits (its children go to an older ancestor or to PID 1), which a pidfd on each tells."""
    with _lock:  # also called from threads (adoption's scan)
        return _protected_pids()


def _protected_pids() -> frozenset[int]:
    global _known
    known = _known
    if known is not None and known.pid == os.getpid() and not known.someone_exited():
        return known.pids
    if known is not None:
        known.close()
    _known = None
    chain = _read_ancestors()
    if chain is None:  # unreadable (a /proc hiding other users' processes): not kept
        return frozenset({1, os.getpid()})
    watched = _Ancestors.watch(chain)
    # Read again after the pidfds are open: an ancestor that exited before its pidfd was opened
    # has left the chain by then (its PID may name another process now), so the two differ.
    if watched is not None and _read_ancestors() == chain:
        _known = watched
    elif watched is not None:
        watched.close()
    return chain


def _read_ancestors() -> frozenset[int] | None:
    try:
        parents = psutil.Process().parents()
    except psutil.Error:
        return None
    return frozenset({1, os.getpid(), *(p.pid for p in parents)})


@dataclass
class _Ancestors:
    """The protected set as read, with a pidfd on each ancestor that may exit (Linux)."""

    pid: int  # the agent that read it (a forked child has other ancestors)
    pids: frozenset[int]
    fds: list[int]
    poller: "select.poll"

    @classmethod
    def watch(cls, pids: frozenset[int]) -> "_Ancestors | None":
        """None where pidfds are not available (then the set is read at every call)."""
        opener = getattr(os, "pidfd_open", None)
        if opener is None or not hasattr(select, "poll"):
            return None
        me = os.getpid()
        fds: list[int] = []
        poller = select.poll()
        for pid in pids - {1, me}:
            try:
                fd = int(opener(pid))
            except OSError:  # exited already, or no pidfd in this kernel
                for opened in fds:
                    os.close(opened)
                return None
            fds.append(fd)
            poller.register(fd, select.POLLIN)
        return cls(me, pids, fds, poller)

    def someone_exited(self) -> bool:
        return bool(self.poller.poll(0))  # a pidfd is readable once its process has exited

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


_known: _Ancestors | None = None
_lock = threading.Lock()


def is_kernel_thread(pid: int, ppid: int | None) -> bool:
    return sys.platform.startswith("linux") and (pid == KTHREADD or ppid == KTHREADD)


def why_protected(proc: psutil.Process, protected: frozenset[int] | None = None) -> str | None:
    """Why GDOS must leave this process alone, or None when it may take it."""
    why = _why_listed(proc.pid, protected if protected is not None else protected_pids())
    if why is not None:
        return why
    try:
        ppid = proc.ppid()
    except psutil.Error:
        ppid = None
    if is_kernel_thread(proc.pid, ppid):
        return "it is a kernel thread"
    return None


def _why_listed(pid: int, protected: frozenset[int]) -> str | None:
    if pid == 1:
        return "it is PID 1, the node's init process"
    if pid == os.getpid():
        return "it is this GDOS agent"
    if pid in protected:
        return "it is an ancestor of this GDOS agent"
    return None


def guard_tree(procs: list[psutil.Process], name: str, child: bool = False) -> None:
    """Refuse to signal a tree (its root first) that holds a protected process (checked again
    at every stop: what an adopted process's tree holds can change after the adoption).
    `child`: the root is the agent's own child, so neither a kernel thread nor an ancestor."""
    protected = protected_pids()
    for i, proc in enumerate(procs):
        # A kernel thread's parent is kthreadd (PID 2), itself one: below a root that is not
        # a kernel thread there is none, so only the root's parent is read.
        full = i == 0 and not child
        why = why_protected(proc, protected) if full else _why_listed(proc.pid, protected)
        if why is not None:
            raise GdosError(
                ErrorCode.FORBIDDEN,
                f"refusing to signal the processes of {name}: process {proc.pid} in its tree "
                f"must not be signalled ({why})",
                {"pid": proc.pid},
            )
