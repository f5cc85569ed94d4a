"""Child processes the master and the console start: tied to their parent, and awaited.

What `die_with_parent` makes runs in the child before exec (Linux): the child gets SIGTERM when the
process that started it dies, however it dies (kill -9 included), so nothing it started is
left behind as an orphan. Elsewhere the parents stop their children on the way out.
`wait_exit` awaits a child's end without polling and reaps it (no zombie is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable


def die_with_parent() -> Callable[[], None]:
    """The function to run in the child before exec: SIGTERM when the parent dies
    (PR_SET_PDEATHSIG, Linux).

    libc is loaded here, in the parent: the child of a process with threads may only do what
    needs no lock another thread could have held at the fork (an import or a `dlopen` in the
    child once hung it forever). The signal follows the thread that forked, so call Popen from
    a thread that lives as long as the parent (the main thread), never from a worker thread."""
    import ctypes

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def in_child() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return in_child


def tied_to_parent() -> Callable[[], None] | None:
    """The `preexec_fn` that ties a child to its parent where the OS can, else None."""
    return die_with_parent() if sys.platform == "linux" else None


async def wait_exit(proc: subprocess.Popen[bytes]) -> int:
    """The child's exit code once it ends (negative: the signal that ended it), reaped.

    A thread of its own blocks in waitpid (no executor worker is held for the child's life,
    and no poll): the event loop hears of the exit at once."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()

    def settle(code: int) -> None:
        if not done.done():
            done.set_result(code)

    def wait() -> None:
        code = proc.wait()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, code)

    threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()
    return await done


def stop_child(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout`; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def describe_exit(code: int) -> str:
    """How a child ended, in words: "was killed by signal 9 (SIGKILL)", "exited with code 3"."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {-code} ({name})"
    return "exited" if code == 0 else f"exited with code {code}"
