"""Finding again, at an agent's start, the processes the last agent ran: by their recorded
identity, else by the environment marker every service the agent spawns carries."""

import os

import psutil

from agent.executor import process
from agent.executor.launch import ENV_INSTANCE_ID
from agent.executor.managed import Managed


class Survivors:
    """The live process of each instance of the last agent's table (one marker scan at most)."""

    def __init__(self) -> None:
        self._markers: dict[str, psutil.Process] | None = None

    def of(self, m: Managed) -> psutil.Process | None:
        """`m`'s process, or None. A process found by its marker (spawned just before the last
        agent died, so not yet recorded) updates `m`'s recorded command line."""
        ident = m.identity
        proc = process.find(ident) if ident else None
        if proc is None and not m.adopted:
            if self._markers is None:
                self._markers = processes_by_marker()
            proc = self._markers.get(m.id)
            if proc is not None and m.cmdline is not None:
                m.cmdline = _cmdline(proc)
        return proc


def processes_by_marker() -> dict[str, psutil.Process]:
    """Instance id -> the live process carrying it that the agent started.

    A service's own children inherit the marker. The agent starts every service as the leader
    of a new session, and a child stays in its parent's session, so a leader is taken first,
    then the oldest. Oldest alone would take the child a crashed service left running over the
    service restarted after it (where there are no sessions, oldest it is)."""
    found: dict[str, tuple[tuple[bool, float], psutil.Process]] = {}
    for proc in psutil.process_iter(["create_time", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            value = proc.environ().get(ENV_INSTANCE_ID)
            if not value:
                continue
            rank = (not _leads_its_session(proc.pid), proc.info["create_time"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
        if value not in found or rank < found[value][0]:
            found[value] = (rank, proc)
    return {value: proc for value, (_, proc) in found.items()}


def _leads_its_session(pid: int) -> bool:
    if not hasattr(os, "getsid"):  # Windows has no sessions of this kind
        return False
    return os.getsid(pid) == pid


def _cmdline(proc: psutil.Process) -> list[str] | None:
    try:
        return proc.cmdline()
    except psutil.Error:
        return None
