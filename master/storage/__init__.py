"""Package stores: where uploaded zips live, addressed by sha256."""

from master.config import Settings
from master.storage.base import PackageStore
from master.storage.local import LocalStore


def make_store(settings: Settings) -> PackageStore:
    if settings.store_type == "minio":
        raise SystemExit("gdos-master: --store-type minio is not available in this build yet")
    return LocalStore(settings.uploads_path)


__all__ = ["LocalStore", "PackageStore", "make_store"]
