"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS): send binary bodies as they are."""

from typing import Any

import schemathesis


@schemathesis.serializer("application/zip", "application/offset+octet-stream")
def _binary(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()
