"""`${VAR}` in a service's arguments and health check, taken from the instance's environment.

Only the braced form is expanded (`$VAR` stays as written, as a shell-less argument should), and
`$${VAR}` is a literal `${VAR}`. A variable the environment lacks is an error, never an empty
string: a port that silently became "" would start a service on the wrong address.
"""

import re
from collections.abc import Mapping

_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


class MissingVariable(KeyError):
    """`name` is referenced but not set; `where` says what referenced it."""

    def __init__(self, name: str, where: str) -> None:
        super().__init__(name)
        self.name = name
        self.where = where

    def __str__(self) -> str:
        return f"{self.where} names ${{{self.name}}}, which is not in the instance's environment"


def references(text: str) -> list[str]:
    """The variable names `text` would expand (escaped ones left out)."""
    return [m.group(2) for m in _REFERENCE.finditer(text) if not m.group(1)]


def expand(text: str, env: Mapping[str, str], where: str = "a value") -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1):
            return "${" + m.group(2) + "}"
        try:
            return env[m.group(2)]
        except KeyError:
            raise MissingVariable(m.group(2), where) from None

    return _REFERENCE.sub(one, text)


def expand_all(items: list[str], env: Mapping[str, str], where: str) -> list[str]:
    return [expand(item, env, f"{where} {i + 1}") for i, item in enumerate(items)]
