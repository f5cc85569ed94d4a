"""JSON with `//` and `/* */` comments and trailing commas, as people write service.json by hand."""

import json
from typing import Any


def strip_jsonc(text: str) -> str:
    """Blank out comments and drop trailing commas, keeping line/column positions for errors."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    pending_comma: int | None = None  # index in `out` of a comma that may turn out trailing
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
            continue
        if c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            out.append(" " * (end - i))
            i = end
            continue
        if c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:end]))
            i = end
            continue
        if c in "]}" and pending_comma is not None:
            out[pending_comma] = " "
        if not c.isspace():
            pending_comma = None
        if c == ",":
            pending_comma = len(out)
        if c == '"':
            in_string = True
        out.append(c)
        i += 1
    return "".join(out)


def loads(text: str) -> Any:
    """Parse JSONC; raises `json.JSONDecodeError` with the position in the original text."""
    return json.loads(strip_jsonc(text))
