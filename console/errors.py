"""A refused request in words: which field is wrong and what to change (no Qt here).

The master answers invalid input with `422 validation_failed` and, per field,
`details.problems: [{"field", "message", "type"}]` in pydantic's words ("String should match
pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'"); its own checks name one `details.field`. This turns both
into phrases a person can act on ("may contain only letters, digits, ...'"), keyed by field, so a
form can show each next to its field.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from console.client import ClientError
from protocol.manifest import NAME_SCHEMA_PATTERN

WHOLE = ""  # the key of a problem with the request as a whole (no one field)
NAME_CHARS = "may contain only letters, digits, '.', '-' and '_' (no spaces), starting with a letter or digit"

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _n(text: str) -> str:
    return text.rstrip(".").removesuffix(".0")


_RULES: list[_Rule] = [
    (
        re.compile(re.escape(f"String should match pattern '{NAME_SCHEMA_PATTERN}'")),
        lambda m: NAME_CHARS,
    ),
    (re.compile(r"String should match pattern"), lambda m: "has characters that are not allowed"),
    (re.compile(r"String should have at least 1 character"), lambda m: "cannot be empty"),
    (
        re.compile(r"String should have at least (\d+) characters"),
        lambda m: f"needs at least {m[1]} characters",
    ),
    (
        re.compile(r"String should have at most (\d+) characters?"),
        lambda m: f"can have at most {m[1]} characters",
    ),
    (re.compile(r"Field required"), lambda m: "is needed"),
    (re.compile(r"Input should be a valid string"), lambda m: "must be text"),
    (re.compile(r"Input should be a valid integer"), lambda m: "must be a whole number"),
    (re.compile(r"Input should be a valid (number|float)"), lambda m: "must be a number"),
    (re.compile(r"Input should be a valid boolean"), lambda m: "must be yes or no"),
    (re.compile(r"Input should be a valid URL"), lambda m: "must be a URL like https://host/path"),
    (re.compile(r"URL scheme should be"), lambda m: "must start with http:// or https://"),
    (
        re.compile(r"Input should be a valid (dictionary|object)"),
        lambda m: "must be NAME=value pairs",
    ),
    (re.compile(r"Input should be a valid (list|array)"), lambda m: "must be a list"),
    (
        re.compile(r"Input should be greater than or equal to ([-\d.]+)"),
        lambda m: f"must be {_n(m[1])} or more",
    ),
    (
        re.compile(r"Input should be greater than ([-\d.]+)"),
        lambda m: f"must be more than {_n(m[1])}",
    ),
    (
        re.compile(r"Input should be less than or equal to ([-\d.]+)"),
        lambda m: f"must be {_n(m[1])} or less",
    ),
    (re.compile(r"Input should be less than ([-\d.]+)"), lambda m: f"must be less than {_n(m[1])}"),
    (
        re.compile(r"Input should be (('[^']*'(, | or )?)+)$"),
        lambda m: "must be one of " + ", ".join(re.findall(r"'([^']*)'", m[1])),
    ),
    (re.compile(r"Extra inputs are not permitted"), lambda m: "is not something this master knows"),
    (re.compile(r"^Value error, (.*)"), lambda m: m[1]),
]


def phrase(message: str) -> str:
    """What to change, as a phrase that follows the field's name ("name cannot be empty")."""
    for pattern, say in _RULES:
        m = pattern.search(message)
        if m:
            return say(m)
    return message


def field_problems(exc: ClientError, name_field: str = "name") -> dict[str, str]:
    """{field: phrase} for a refused request; `WHOLE` holds a sentence for the request itself.

    A name that is taken (409 already_exists) belongs to `name_field`."""
    problems = exc.details.get("problems")
    if exc.code == "validation_failed" and isinstance(problems, list) and problems:
        out: dict[str, str] = {}
        for p in problems:
            if isinstance(p, dict):
                name = str(p.get("field") or WHOLE)
                out.setdefault("" if name == "body" else name, phrase(str(p.get("message"))))
        return out
    field = exc.details.get("field")
    if isinstance(field, str) and field:
        return {field: phrase(exc.message.removeprefix(f"{field}: "))}
    if exc.code == "already_exists" and name_field:
        return {name_field: exc.message}
    return {WHOLE: exc.message}


def sentence(exc: ClientError) -> str:
    """The refusal as one sentence ("name may contain only letters, …"), for a banner."""
    problems = field_problems(exc, name_field="")
    if WHOLE in problems and len(problems) == 1:
        return problems[WHOLE]
    return "; ".join(
        f"{field.replace('_', ' ')} {text}" if field else text for field, text in problems.items()
    )


def in_the_way(exc: ClientError) -> ClientError:
    """A 409 naming the operation running on the system, worded for the console (the master's
    sentence names its URL); any other refusal as it is."""
    busy = exc.details.get("operation_id")
    if exc.status != 409 or not busy:
        return exc
    kind = exc.details.get("kind") or "operation"
    return ClientError(
        f"a {kind} ({busy}) is running on this system: wait for it to end, or cancel it "
        "(Cancel operation, below the systems)",
        status=exc.status,
        code=exc.code,
        details=exc.details,
    )
