"""Package stores: where uploaded zips live, addressed by sha256."""

from master.config import Settings
from master.storage.base import PackageStore
from master.storage.local import LocalStore
from protocol.errors import GdosError


def make_store(settings: Settings) -> PackageStore:
    if settings.store_type == "minio":
        return _make_s3(settings)
    return LocalStore(settings.uploads_path)


def _make_s3(settings: Settings) -> PackageStore:
    try:
        from master.storage.s3 import S3Store
    except ImportError:
        raise SystemExit(
            "gdos-master: --store-type minio needs the minio library (pip install 'gdos[s3]')"
        ) from None
    endpoint, secure = settings.minio_endpoint.strip(), settings.minio_secure
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            endpoint, secure = endpoint[len(scheme) :], secure or scheme == "https://"
    endpoint = endpoint.rstrip("/")
    if not endpoint:
        raise SystemExit("gdos-master: --store-type minio needs --minio-endpoint host:port")
    try:
        return S3Store(
            endpoint,
            settings.minio_ak,
            settings.minio_sk,
            settings.minio_bucket,
            incoming=settings.uploads_path / ".incoming",
            secure=secure,
            region=settings.minio_region,
        )
    except ValueError as exc:
        raise SystemExit(f"gdos-master: --minio-endpoint {endpoint!r}: {exc}") from None


async def open_store(settings: Settings) -> PackageStore:
    """Build the configured store and check it works (an object store's bucket is created)."""
    store = make_store(settings)
    opener = getattr(store, "open", None)
    if opener is not None:
        try:
            await opener()
        except GdosError as exc:
            raise SystemExit(
                f"gdos-master: cannot use bucket {settings.minio_bucket!r}: {exc.message}"
            ) from None
    return store


__all__ = ["LocalStore", "PackageStore", "make_store", "open_store"]
