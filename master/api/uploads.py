"""Resumable package uploads over tus 1.0 (core + creation, termination, expiration).

`POST /api/v1/packages/uploads` creates an upload, `HEAD <location>` says how far it got,
`PATCH <location>` appends, `GET <location>` gives the package (or why it was refused) once
the last byte is in, `DELETE <location>` abandons it. Any tus client works; so does curl.
"""

from collections.abc import Callable, Coroutine
from email.utils import formatdate
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from master.api.body import Body
from master.api.body_limits import timed_out
from master.api.deps import Operator, ServicesDep, SessionDep, Viewer
from master.api.errors import ERROR_RESPONSES, STATUS, error_response
from master.db import models
from master.services import uploads as upload_service
from master.services.serializers import package_out
from protocol.errors import ErrorCode, GdosError
from protocol.rest import ErrorDetail, ErrorOut, PackageOut, UploadOut, iso

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,expiration"
OFFSET_TYPE = "application/offset+octet-stream"
NO_LENGTH = "send Upload-Length with the size of the zip (deferred length is not supported)"


class TusRoute(APIRoute):
    """Every answer carries `Tus-Resumable`, errors included (tus clients look for it)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def tus_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as exc:
                locs = [e.get("loc", ()) for e in exc.errors()]
                if any(_is_header(loc, "tus-resumable") for loc in locs):
                    got = request.headers.get("tus-resumable")
                    exc2 = GdosError(
                        ErrorCode.PRECONDITION_FAILED,
                        f"this server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'",
                        {"tus_version": TUS_VERSION, "got": got},
                    )
                    response = error_response(412, exc2.code, exc2.message, exc2.details)
                    response.headers["Tus-Version"] = TUS_VERSION
                elif any(_is_header(loc, "upload-length") for loc in locs):
                    response = error_response(400, ErrorCode.BAD_REQUEST, NO_LENGTH)
                else:
                    raise
            except GdosError as exc:
                response = error_response(
                    STATUS.get(exc.code, 500), exc.code, exc.message, exc.details
                )
                if exc.code == ErrorCode.PRECONDITION_FAILED:
                    response.headers["Tus-Version"] = TUS_VERSION
            response.headers["Tus-Resumable"] = TUS_VERSION
            return response

        return tus_handler


def _is_header(loc: Any, name: str) -> bool:
    return len(loc) >= 2 and loc[0] == "header" and str(loc[1]).lower() == name


def _check_tus_version(got: str | None) -> None:
    if got != TUS_VERSION:
        raise GdosError(
            ErrorCode.PRECONDITION_FAILED,
            f"this server speaks tus {TUS_VERSION}; send 'Tus-Resumable: {TUS_VERSION}'",
            {"tus_version": TUS_VERSION, "got": got},
        )


# Credentials and role come first (the same cached dependency the route uses): an anonymous
# caller or a viewer learns nothing from a 412.
# The header is declared exactly (required, one value) so /openapi.json tells clients; a missing
# or other value is answered 412 by TusRoute, as tus requires, not 422.
TusHeader = Annotated[Literal["1.0.0"], Header(alias="Tus-Resumable")]


def _tus_for_operator(_: Operator, tus_resumable: TusHeader) -> None:
    _check_tus_version(tus_resumable)


def _tus_for_viewer(_: Viewer, tus_resumable: TusHeader) -> None:
    _check_tus_version(tus_resumable)


TusWrite = Depends(_tus_for_operator)
TusRead = Depends(_tus_for_viewer)
UploadId = Annotated[str, Path(max_length=64)]

TUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    412: {"description": "Tus-Resumable missing or not 1.0.0", "model": ErrorOut},
    413: {
        "description": "More bytes than Upload-Length, or over the size limit",
        "model": ErrorOut,
    },
    415: {"description": "PATCH body not application/offset+octet-stream", "model": ErrorOut},
    507: {"description": "The master's disk is full", "model": ErrorOut},
}

router = APIRouter(
    prefix="/uploads", tags=["packages"], responses=TUS_RESPONSES, route_class=TusRoute
)


def _int_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise GdosError(ErrorCode.BAD_REQUEST, f"{name} must be a whole number of bytes")
    return int(text)


def _location(request: Request, upload_id: str) -> str:
    return str(request.url_for("read_upload", upload_id=upload_id))


def _headers(svc_row: models.PackageUpload, offset: int) -> dict[str, str]:
    headers = {
        "Upload-Offset": str(offset),
        "Upload-Length": str(svc_row.length),
        "Upload-Expires": formatdate(svc_row.expires_at, usegmt=True),
        "Cache-Control": "no-store",
    }
    if svc_row.meta:
        headers["Upload-Metadata"] = upload_service.encode_metadata(svc_row.meta)
    return headers


def upload_out(request: Request, row: models.PackageUpload, offset: int) -> UploadOut:
    return UploadOut(
        id=row.id,
        location=_location(request, row.id),
        length=row.length,
        offset=offset,
        state=row.state,
        metadata=row.meta or {},
        created_by=row.created_by,
        created_at=iso(row.created_at) or "",
        expires_at=iso(row.expires_at) or "",
        package_id=row.package_id,
        error=ErrorDetail(**row.error) if row.error else None,
    )


@router.options("", status_code=204, response_class=Response)
def tus_options(_: Viewer, svc: ServicesDep) -> Response:
    """What this tus server supports."""
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Max-Size": str(svc.settings.max_package_size),
        },
    )


@router.post("", status_code=201, response_model=UploadOut, dependencies=[TusWrite])
def create_upload(
    request: Request,
    response: Response,
    principal: Operator,
    svc: ServicesDep,
    # Declared as the schema sees it; _int_header answers 400 for what does not match.
    upload_length: Annotated[
        str,
        Header(
            alias="Upload-Length",
            json_schema_extra={"pattern": "^0*[1-9][0-9]*$", "maxLength": 19},
        ),
    ],
    upload_metadata: Annotated[
        str | None,
        Header(
            alias="Upload-Metadata", json_schema_extra={"pattern": upload_service.METADATA_PATTERN}
        ),
    ] = None,
) -> UploadOut:
    """Start a resumable upload of `Upload-Length` bytes; `Location` is where to PATCH."""
    length = _int_header(upload_length, "Upload-Length")
    if length is None:
        raise GdosError(ErrorCode.BAD_REQUEST, NO_LENGTH)
    meta = upload_service.parse_metadata(upload_metadata)
    row = svc.uploads.create(length, meta, principal.name)
    request.state.audit_target = f"upload={row.id}"
    request.state.audit_detail = {"length": length, "metadata": meta}
    response.headers.update(_headers(row, 0))
    response.headers["Location"] = _location(request, row.id)
    return upload_out(request, row, 0)


@router.get("", response_model=list[UploadOut])
def list_uploads(request: Request, _: Viewer, svc: ServicesDep) -> list[UploadOut]:
    """Uploads in progress and recently finished ones, newest first."""
    return [upload_out(request, r, svc.uploads.offset_of(r)) for r in svc.uploads.listing()]


@router.head(
    "/{upload_id}",
    status_code=200,
    response_class=Response,
    dependencies=[TusRead],
    responses={200: {"description": "Upload-Offset says how many bytes the master has"}},
)
async def head_upload(upload_id: UploadId, _: Viewer, svc: ServicesDep) -> Response:
    """How far the upload got: resume with a PATCH at `Upload-Offset`."""
    row = svc.uploads.load(upload_id)
    offset = await svc.uploads.settled_offset(row)
    return Response(status_code=200, headers=_headers(svc.uploads.load(upload_id), offset))


@router.patch(
    "/{upload_id}",
    status_code=204,
    response_class=Response,
    dependencies=[TusWrite],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {OFFSET_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def patch_upload(
    upload_id: UploadId,
    request: Request,
    principal: Operator,
    s: SessionDep,
    svc: ServicesDep,
    upload_offset: Annotated[int, Header(alias="Upload-Offset", ge=0)],
) -> Response:
    """Append bytes at `Upload-Offset`; the last PATCH also validates and registers the package
    (its answer is then the package's error if it is refused)."""
    s.close()  # hold no pooled connection while the body streams (it may take hours)
    request.state.audit_target = f"upload={upload_id}"
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != OFFSET_TYPE:
        raise GdosError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"a PATCH body must be sent as {OFFSET_TYPE}"
        )
    declared = _int_header(request.headers.get("content-length"), "Content-Length")
    body = Body(request.receive, request.scope)
    row = await svc.uploads.write(upload_id, upload_offset, declared, body)
    if body.stalled:  # read straight from the socket: the idle limit was enforced there
        raise GdosError(ErrorCode.REQUEST_TIMEOUT, timed_out(svc.settings.body_timeout))
    request.state.audit_detail = {"offset": svc.uploads.offset_of(row), "state": row.state}
    if row.state == upload_service.FAILED:
        raise upload_service.stored_error(row)
    if row.state == upload_service.COMPLETE:
        request.state.audit_detail["package_id"] = row.package_id
        pkg = s.get(models.Package, row.package_id) if row.package_id else None
        if pkg is not None:
            svc.hub.publish("package", package_out(pkg).model_dump())
    headers = _headers(row, svc.uploads.offset_of(row))
    del headers["Cache-Control"], headers["Upload-Length"]
    headers.pop("Upload-Metadata", None)
    return Response(status_code=204, headers=headers)


@router.get("/{upload_id}", response_model=PackageOut, name="read_upload")
async def read_upload(
    upload_id: UploadId, _: Viewer, s: SessionDep, svc: ServicesDep
) -> PackageOut:
    """The package once every byte is in and it passed validation; otherwise the error that
    refused it, or 409 while bytes are still missing."""
    row = await svc.uploads.finish_if_complete(svc.uploads.load(upload_id))
    if row.state == upload_service.FAILED:
        raise upload_service.stored_error(row)
    if row.state == upload_service.RECEIVING:
        offset = svc.uploads.offset_of(row)
        raise GdosError(
            ErrorCode.INVALID_STATE,
            f"the upload has {offset} of {row.length} bytes; send the rest with PATCH",
            {"offset": offset, "length": row.length},
        )
    pkg = s.get(models.Package, row.package_id) if row.package_id else None
    if pkg is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"the package of upload {upload_id} was deleted since")
    return package_out(pkg)


@router.delete("/{upload_id}", status_code=204, response_class=Response, dependencies=[TusWrite])
async def delete_upload(
    upload_id: UploadId, request: Request, _: Operator, svc: ServicesDep
) -> Response:
    """Abandon an upload and free its space (a registered package stays)."""
    request.state.audit_target = f"upload={upload_id}"
    await svc.uploads.terminate(upload_id)
    return Response(status_code=204)
