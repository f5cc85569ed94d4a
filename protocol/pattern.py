"""Command-line patterns (`cmdline_pattern`, `process_cmdline`) on RE2, a linear-time engine.

Python's `re` backtracks: `(.|.)*z` doubles its time with each character of the subject, and a
search runs on the agent's event loop, so one pattern could stop its heartbeats. RE2 never
backtracks (time linear in the subject) and caps its memory; what it cannot do (backreferences,
lookaround) is refused when the pattern is given, never at match time. `re2` is imported on
first use: an agent that matches no pattern does not load it.
"""

from functools import lru_cache
from typing import Any, Protocol

MAX_PATTERN = 1024  # characters in a pattern
MAX_SUBJECT = 64 << 10  # characters of a command line searched (more is cut off)
_MAX_MEM = 8 << 20  # RE2's budget for one compiled pattern


class PatternError(ValueError):
    """A pattern that cannot be served; the message says why in a sentence."""


class _Compiled(Protocol):
    def search(self, text: str) -> Any: ...


@lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> _Compiled:
    if not pattern:
        raise PatternError("the pattern is empty")
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN} characters")
    try:
        import re2
    except ImportError:
        raise PatternError(
            "command-line patterns need the google-re2 package, which this installation lacks"
        ) from None
    options = re2.Options()
    options.log_errors = False  # RE2 would write each refusal to stderr
    options.max_mem = _MAX_MEM
    try:
        return re2.compile(pattern, options)  # type: ignore[no-any-return]
    except re2.error as exc:
        why = exc.args[0] if exc.args else exc
        text = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
        raise PatternError(
            f"the pattern is not a regular expression GDOS can run ({text}); patterns use "
            "RE2 syntax, without backreferences or lookaround"
        ) from None


def check(pattern: str) -> None:
    """Raise PatternError unless the pattern can be served."""
    compile_pattern(pattern)


def search(pattern: str, text: str) -> bool:
    """True when the pattern occurs in `text` (its first MAX_SUBJECT characters)."""
    return compile_pattern(pattern).search(text[:MAX_SUBJECT]) is not None
