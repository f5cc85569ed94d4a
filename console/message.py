"""Messages for the user from code that must not import widgets (like qutebrowser's message.py).

Services report through `bridge()`; the main window shows what arrives (status bar, dialog).
Exceptions are turned into one sentence here; tracebacks go to the log, never to the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar, cast

import qasync
from PySide6.QtCore import QObject, Signal

from console import errors
from console.client import ClientError

log = logging.getLogger("gdos.console")
P = ParamSpec("P")
R = TypeVar("R")

ERROR, WARNING, INFO = "error", "warning", "info"


class MessageBridge(QObject):
    shown = Signal(str, str)  # level, text

    def __init__(self) -> None:
        super().__init__()
        self.history: list[tuple[str, str]] = []

    def show(self, level: str, text: str) -> None:
        self.history.append((level, text))
        del self.history[:-200]
        log.log(logging.WARNING if level != INFO else logging.INFO, "%s: %s", level, text)
        self.shown.emit(level, text)


_bridge: MessageBridge | None = None


def bridge() -> MessageBridge:
    global _bridge
    if _bridge is None:
        _bridge = MessageBridge()
    return _bridge


def error(text: str) -> None:
    bridge().show(ERROR, text)


def warning(text: str) -> None:
    bridge().show(WARNING, text)


def info(text: str) -> None:
    bridge().show(INFO, text)


# Raised with a sentence meant for the user; any other exception is the console's own bug.
WORDED = (ClientError, OSError, ValueError, RuntimeError, TimeoutError)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return errors.sentence(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    if isinstance(exc, WORDED):
        return str(exc) or type(exc).__name__
    return f"an unexpected error in the console ({type(exc).__name__}); the details are in its log"


def report(what: str, exc: BaseException) -> None:
    """Tell the user that `what` failed, in words."""
    if not isinstance(exc, ClientError | OSError):
        log.exception("%s failed", what, exc_info=exc)
    error(f"{what} failed: {describe(exc)}")


class Refusal:
    """Where an action started inside `captured()` leaves its failure."""

    def __init__(self) -> None:
        self.error: Exception | None = None


_sink: contextvars.ContextVar[Refusal | None] = contextvars.ContextVar("sink", default=None)


@contextlib.contextmanager
def captured() -> Iterator[Refusal]:
    """Actions started inside this block leave their failure in the yielded `Refusal` instead
    of reporting it (a dialog that keeps its input and shows the problem next to the field)."""
    refusal = Refusal()
    token = _sink.set(refusal)
    try:
        yield refusal
    finally:
        _sink.reset(token)


def action(
    what: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R | None]]]:
    """Wrap a service coroutine so that any failure reaches the user as a message, not a trace
    (or, started inside `captured()`, reaches the caller)."""

    def wrap(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R | None]]:
        @functools.wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
            sink = _sink.get()
            token = _sink.set(None)  # actions this one starts report their own failures
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if sink is not None:
                    sink.error = exc
                else:
                    report(what, exc)
                return None
            finally:
                _sink.reset(token)

        return run

    return wrap


def async_slot(
    *types: type,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, asyncio.Task[R]]]:
    """`qasync.asyncSlot` with types: the call schedules the coroutine and returns its task."""
    return cast(
        "Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, asyncio.Task[R]]]",
        qasync.asyncSlot(*types),
    )
