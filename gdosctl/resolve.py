"""Names or unique id prefixes for everything a command names: `web-1`, `shop/web-1` when a
name is in several systems, or `3f9a` (the start of an id). Pure: the caller fetches the lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gdosctl.errors import NOT_FOUND, USAGE, CtlError


@dataclass(frozen=True)
class Named:
    id: str
    name: str
    scope: str = ""  # the system's name, for instances and modules

    @property
    def label(self) -> str:
        full = f"{self.scope}/{self.name}" if self.scope else self.name
        return f"{full} ({self.id})"


def pick(kind: str, query: str, items: Sequence[Named]) -> Named:
    """The one item `query` names: an id, `SCOPE/NAME`, a name, or an id prefix (in that order).
    Several: exit 2 with the candidates; none: exit 3."""
    for item in items:
        if item.id == query:
            return item
    if "/" in query:
        scope, _, name = query.rpartition("/")
        found = [i for i in items if i.scope == scope and i.name == name]
    else:
        found = [i for i in items if i.name == query]
    if not found and "/" not in query:
        found = [i for i in items if i.id.startswith(query)]
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(i.label for i in found[:10]) + (" ..." if len(found) > 10 else "")
        how = "SYSTEM/NAME or an id" if any(i.scope for i in found) else "an id"
        raise CtlError(f"{kind} {query!r} is ambiguous: {listed}; name one by {how}", USAGE)
    raise CtlError(f"no {kind} {query!r} (by name or id prefix)", NOT_FOUND)
