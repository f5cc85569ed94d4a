"""Third-party packages a master imports without the parts of them it never uses.

httpx's package imports its command line (`httpx._main`: rich, Pygments and click, installed
for gdosctl) and minio's its admin client (`minio.minioadmin`: argon2, pycryptodome, cffi).
Each costs a PostgreSQL + S3 master about 2.3 MiB of RSS for its whole life. The package is
imported here once with that submodule stubbed for the package's own import only; the stub
is gone afterwards, so an explicit `import minio.minioadmin` still loads the real one.
"""

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def _stubbed(name: str, stub: types.ModuleType | None) -> Iterator[None]:
    if name in sys.modules:
        yield
        return
    sys.modules[name] = stub  # type: ignore[assignment]  # None makes the import fail
    try:
        yield
    finally:
        if sys.modules.get(name) is stub:
            del sys.modules[name]


def load_httpx() -> None:
    """Import httpx without its command line (its `__init__` falls back on ImportError)."""
    if "httpx" not in sys.modules:
        with _stubbed("httpx._main", None):
            import httpx  # noqa: F401


def load_minio() -> None:
    """Import minio without its admin client (its `__init__` re-exports `MinioAdmin`)."""
    if "minio" not in sys.modules:
        stub = types.ModuleType("minio.minioadmin")
        stub.MinioAdmin = None  # type: ignore[attr-defined]
        with _stubbed("minio.minioadmin", stub):
            import minio  # noqa: F401
