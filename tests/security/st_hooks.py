"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS) for tests/security/test_fuzz.py.

- Binary bodies: the zip upload and the tus PATCH get generated package zips (most of them
  valid, with fuzzed service.json fields) and raw bytes, sent as they are. Without them every
  upload is refused and nothing a package makes possible (modules, their PATCH) is reached.
- Known ids: the test creates a few resources and names them in GDOS_FUZZ_KNOWN (JSON: field
  name -> ids). Most generated values of such a field, in the path or the body, are swapped for
  one of them, so that requests reach the routes behind "no such id". The swap is a function of
  the generated value, so that a seed replays the same requests.
"""

import io
import json
import os
import zipfile
import zlib
from typing import Any

import schemathesis
from hypothesis import strategies as st

# The names of the packages the test uploads before the run, so that modules can name them.
PACKAGE_NAMES = ("fz-a", "fz-b")
KNOWN: dict[str, list[str]] = json.loads(os.environ.get("GDOS_FUZZ_KNOWN", "{}"))

_text = st.text(max_size=24)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_optional_fields = {
    "description": _text,
    "args": st.lists(_text, max_size=4),
    "env": st.dictionaries(_text, _text, max_size=4),
    "stop_args": st.lists(_text, max_size=3),
    "stop_timeout": st.floats(min_value=-1, max_value=4000),
    "log_paths": st.dictionaries(_text, _text, max_size=3),
    "os": st.sampled_from(["linux", "windows", "darwin", "beos"]),
    "restart": st.sampled_from(["no", "on-failure", "always", "sometimes"]),
    "restart_limit": st.integers(min_value=-1, max_value=2000),
    "health": st.one_of(
        st.fixed_dictionaries({"tcp": st.integers(min_value=0, max_value=70000)}),
        st.fixed_dictionaries({"command": st.lists(_text, max_size=3)}),
        st.dictionaries(_text, _json, max_size=3),
    ),
    "pid_strategy": st.sampled_from(["spawn", "match"]),
    "process_name": _text,
    "log_rotate": st.dictionaries(st.sampled_from(["max_bytes", "backups", "log_paths"]), _json),
}


@st.composite
def _manifest(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "name": draw(st.sampled_from(PACKAGE_NAMES)),
        "version": draw(st.from_regex(r"\A[0-9][0-9a-z.]{0,6}\Z")),
        "entrypoint": draw(st.sampled_from(["bin/run", "bin/run", "../run", "missing"])),
    }
    body.update(draw(st.fixed_dictionaries({}, optional=_optional_fields)))
    if draw(st.integers(0, 7)) == 0:
        body["surprise"] = 1  # an unknown field
    return body


@st.composite
def _package_zip(draw: st.DrawFn) -> bytes:
    manifest = draw(st.one_of(_manifest(), _manifest(), _json))
    entries: dict[str, bytes] = {
        "service.json": json.dumps(manifest).encode(),
        "bin/run": b"#!/bin/sh\nexit 0\n",
    }
    entries.update(
        draw(
            st.dictionaries(
                st.sampled_from(["a/b", "../x", "/abs", "c"]), st.binary(max_size=16), max_size=2
            )
        )
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    data = out.getvalue()
    cut = draw(st.sampled_from([None, None, None, None, len(data) // 2]))
    return data if cut is None else data[:cut]


PACKAGE_BODIES = st.one_of(_package_zip(), _package_zip(), _package_zip(), st.binary(max_size=64))
schemathesis.openapi.media_type("application/zip", PACKAGE_BODIES)
schemathesis.openapi.media_type("application/offset+octet-stream", PACKAGE_BODIES)


def _known(field: str, value: Any) -> Any:
    ids = KNOWN.get(field)
    if not ids or not isinstance(value, str):
        return value
    pick = zlib.crc32(value.encode("utf-8", "surrogatepass"))
    return value if pick % 4 == 0 else ids[pick % len(ids)]


def _swap(container: Any, depth: int = 0) -> Any:
    if not isinstance(container, dict):
        return container
    return {
        key: _swap(value, depth + 1)
        if isinstance(value, dict) and depth < 1
        else _known(key, value)
        for key, value in container.items()
    }


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    if case.path_parameters:
        case.path_parameters = _swap(case.path_parameters)
    if isinstance(case.body, dict):
        case.body = _swap(case.body)
    return case
