"""The base of every value GDOS puts on the wire or in a state file (msgspec, not pydantic:
small and fast enough for the agent and for the master's ingest path)."""

import re
from typing import Any, Self

import msgspec


class _Methods:
    """What every wire value can do (a mixin, so frozen and mutable structs share it)."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()

    def replace(self, **changes: Any) -> Self:
        return msgspec.structs.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def from_data(cls, data: Any) -> Self:
        """Validate plain data (a dict from JSON or the database) into this type."""
        return msgspec.convert(data, cls)


class Struct(_Methods, msgspec.Struct, kw_only=True):
    """Build with keywords; `to_dict()` / `to_json()` to send; `from_data()` to validate."""


class FrozenStruct(_Methods, msgspec.Struct, frozen=True, kw_only=True):
    """A `Struct` that cannot change once built (manifests)."""


_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def describe(error: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec's "Expected `str`, got `int` - at `$.args[1]`" as ("args.1", "expected a
    string, got an integer"): the field path a person reads and the problem in words."""
    text = str(error)
    message, _, where = text.partition(" - at `")
    path = where.rstrip("`").removeprefix("$")
    path = re.sub(r"\[(\d+)\]", r".\1", path).lstrip(".")
    message = re.sub(
        r"`([a-z| ]+)`",
        lambda m: " or ".join(_WORDS.get(w.strip(), w.strip()) for w in m.group(1).split("|")),
        message,
    )
    message = message.replace("Expected ", "expected ")
    return path, message
