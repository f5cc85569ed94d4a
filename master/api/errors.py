"""Translate every failure into the error body of API.md, once, at the edge."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from protocol.errors import ErrorCode, GdosError
from protocol.rest import ErrorOut

log = logging.getLogger(__name__)

STATUS = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.IN_USE: 409,
    ErrorCode.NODE_OFFLINE: 409,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.INVALID_PACKAGE: 422,
    ErrorCode.INVALID_MANIFEST: 422,
    ErrorCode.UNSAFE_ARCHIVE: 422,
    ErrorCode.CHECKSUM_MISMATCH: 422,
    ErrorCode.OS_MISMATCH: 422,
    ErrorCode.STORAGE_FULL: 507,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.UNSUPPORTED: 501,
    ErrorCode.PROCESS_IDENTITY: 409,
    ErrorCode.AMBIGUOUS_MATCH: 409,
    ErrorCode.PROCESS_NOT_FOUND: 422,
    ErrorCode.START_FAILED: 409,
    ErrorCode.STOP_FAILED: 409,
    ErrorCode.DEPLOY_FAILED: 409,
}

_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _gdos_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GdosError)
    return error_response(STATUS.get(exc.code, 500), exc.code, exc.message, exc.details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, ErrorCode.INVALID_JSON, "the request body is not valid JSON")
    if any(
        tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), str | bytes)
        for e in errors
    ):
        return error_response(
            400,
            ErrorCode.INVALID_JSON,
            "the request body is not a JSON object (send application/json)",
        )
    problems = [
        {"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg"))} for e in errors
    ]
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    return error_response(
        422,
        ErrorCode.VALIDATION_FAILED,
        f"{first['field']}: {first['message']}",
        {"problems": problems},
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint"
    return error_response(exc.status_code, code, message)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ErrorCode.INTERNAL, "internal error; the master's log has details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(GdosError, _gdos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": desc, "model": ErrorOut}
    for code, desc in {
        400: "Malformed request",
        401: "No or invalid credentials",
        403: "Not allowed for this role",
        404: "Unknown id",
        409: "Conflict with the current state",
        422: "Invalid content",
    }.items()
}
