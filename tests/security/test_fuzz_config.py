"""The fuzz run's own settings say what they mean: every exception in schemathesis.toml applies
to exactly the operations it names, and every binary request body has a generator, so that
those operations are fuzzed rather than skipped."""

import re
import tomllib
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.core.media_types import find_media_type_strategy

import tests.security.st_hooks  # noqa: F401  (registers the media types)
from master.app import create_app
from master.config import Settings

CONFIG = Path(__file__).with_name("schemathesis.toml")
DOC = create_app(Settings()).openapi()


def operations() -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head", "options")
    ]


def test_each_exception_applies_to_what_it_names():
    schema = schemathesis.openapi.from_dict(DOC, config=SchemathesisConfig.from_path(CONFIG))
    entries = tomllib.loads(CONFIG.read_text())["operations"]
    for entry, config in zip(entries, schema.config.operations.operations, strict=True):
        hits = [f"{m} {p}" for m, p in operations() if config._filter_set.applies_to(schema[p][m])]
        if "include-name" in entry:
            assert hits == [entry["include-name"]], entry
        else:  # a path: every method at it, and nothing else
            assert hits and all(entry_matches(entry, h.split(" ", 1)[1]) for h in hits), entry


def entry_matches(entry: dict, path: str) -> bool:
    if "include-path" in entry:
        return path == entry["include-path"]
    return re.search(entry["include-path-regex"], path) is not None


@pytest.mark.parametrize(
    "media_type",
    sorted(
        {
            media
            for item in DOC["paths"].values()
            for op in item.values()
            if isinstance(op, dict)
            for media in op.get("requestBody", {}).get("content", {})
            if media != "application/json"
        }
    ),
)
def test_every_binary_body_has_a_generator(media_type):
    assert find_media_type_strategy(media_type) is not None
