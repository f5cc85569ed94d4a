"""Packages: one-shot streamed upload, resumable uploads (./uploads.py), list, read, download,
delete."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from sqlalchemy import select

from master.api import uploads
from master.api.body import Body
from master.api.deps import AnyPrincipal, Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.db.session import get_or_404
from master.services import packages as package_service
from master.services.serializers import package_out
from protocol.errors import ErrorCode, GdosError
from protocol.rest import PackageOut

router = APIRouter(prefix="/api/v1/packages", tags=["packages"], responses=ERROR_RESPONSES)
# First, so that `/packages/uploads/...` is never taken for a package id.
router.include_router(uploads.router)
PackageId = Annotated[str, Path(max_length=64)]


def streams_its_body(method: str, path: str) -> bool:
    """The package uploads: they read their bodies themselves, with their own size limits."""
    return (method == "POST" and path == router.prefix) or (
        method == "PATCH" and path.startswith(f"{router.prefix}/uploads/")
    )


def get_package(s: SessionDep, package_id: str) -> models.Package:
    return get_or_404(s, models.Package, package_id, "package")


@router.post(
    "",
    response_model=PackageOut,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def upload_package(
    request: Request, principal: Operator, s: SessionDep, svc: ServicesDep
) -> PackageOut:
    """Upload a package zip as the raw request body (streamed to disk, validated, registered)."""
    limit = svc.settings.max_package_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise package_service.too_large(limit)
    s.close()  # hold no pooled connection while the body streams
    body = Body(request.receive)
    try:
        path, sha, size, marks = await package_service.receive_to_file(
            body.chunks(), svc.store.incoming_dir, limit
        )
    except GdosError:
        await body.discard()
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise GdosError(ErrorCode.INVALID_PACKAGE, "the request body is empty; send the zip file")
    pkg = await package_service.register_file(
        s, svc.store, path, sha, size, principal.name, marks=marks
    )
    request.state.audit_target = f"package={pkg.id}"
    request.state.audit_detail = {"name": pkg.name, "version": pkg.version, "sha256": sha}
    out = package_out(pkg)
    svc.hub.publish("package", out.model_dump())
    return out


@router.get("", response_model=list[PackageOut])
def list_packages(
    _: Viewer,
    s: SessionDep,
    name: Annotated[str | None, Query(max_length=128, description="only this package")] = None,
) -> list[PackageOut]:
    """Every package (or every version of `name`), grouped by name, newest upload first: the
    first of a name is what a module with `version: null` deploys."""
    q = select(models.Package)
    if name is not None:
        q = q.where(models.Package.name == name)
    rows = s.scalars(
        q.order_by(models.Package.name, models.Package.uploaded_at.desc(), models.Package.id.desc())
    )
    return [package_out(p) for p in rows]


@router.get("/{package_id}", response_model=PackageOut)
def read_package(package_id: PackageId, _: Viewer, s: SessionDep) -> PackageOut:
    return package_out(get_package(s, package_id))


@router.get(
    "/{package_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
async def download_package(
    package_id: PackageId, _: AnyPrincipal, s: SessionDep, svc: ServicesDep
) -> Response:
    """The zip itself; operators and agents alike may fetch it."""
    pkg = get_package(s, package_id)
    filename = f"{pkg.name}-{pkg.version}.zip"
    headers = {"X-Checksum-Sha256": pkg.sha256}
    # The response streams for as long as the client reads; a pooled connection held that
    # long would starve the pool when many agents deploy at once.
    s.close()
    local = svc.store.local_path(pkg.sha256)
    if local is not None:
        if not local.is_file():  # e.g. a restored backup names a package deleted since
            raise GdosError(
                ErrorCode.NOT_FOUND,
                f"the zip of package {pkg.name} {pkg.version} is no longer in the package store "
                "(was it deleted after the backup that was restored?): upload it again",
            )
        return FileResponse(local, media_type="application/zip", filename=filename, headers=headers)
    url = await svc.store.presigned_url(pkg.sha256, 600)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=headers)
    return StreamingResponse(
        svc.store.stream(pkg.sha256), media_type="application/zip", headers=headers
    )


@router.delete("/{package_id}", status_code=204, response_class=Response)
async def delete_package(
    package_id: PackageId, _: Operator, request: Request, s: SessionDep, svc: ServicesDep
) -> Response:
    pkg = get_package(s, package_id)
    request.state.audit_detail = {"name": pkg.name, "version": pkg.version}
    await package_service.delete_package(s, svc.store, pkg)
    svc.hub.publish("package", {"id": package_id, "deleted": True})
    return Response(status_code=204)
