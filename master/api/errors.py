"""Translate every failure into the error body of API.md, once, at the edge."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from master.api.routes import methods_at
from master.db.session import RETRYABLE_SQLSTATES, sqlstate
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
    ErrorCode.PRECONDITION_FAILED: 412,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INVALID_PACKAGE: 422,
    ErrorCode.INVALID_MANIFEST: 422,
    ErrorCode.UNSAFE_ARCHIVE: 422,
    ErrorCode.CHECKSUM_MISMATCH: 422,
    ErrorCode.OS_MISMATCH: 422,
    ErrorCode.STORAGE_FULL: 507,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.TOO_MANY_REQUESTS: 429,
    ErrorCode.UNSUPPORTED: 501,
    ErrorCode.UNAVAILABLE: 503,
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
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.TOO_LARGE,
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, headers=all_headers or None)


def _field(loc: tuple[Any, ...], where: Any = None) -> str:
    """The field path a person reads; `where` (a refused key, from the error's context) goes on
    the end, so `{"env": {"A=B": ""}}` names `env.A=B`."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    if where is not None:
        parts.append(str(where))
    return ".".join(parts) or "body"


async def _gdos_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GdosError)
    headers = None
    if "retry_after" in exc.details:
        headers = {"Retry-After": str(max(1, round(float(exc.details["retry_after"]))))}
    return error_response(STATUS.get(exc.code, 500), exc.code, exc.message, exc.details, headers)


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
        {
            "field": _field(tuple(e.get("loc", ())), (e.get("ctx") or {}).get("where")),
            # pydantic prefixes a validator's own sentence with "Value error, ".
            "message": str(e.get("msg")).removeprefix("Value error, "),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    return error_response(
        422,
        ErrorCode.VALIDATION_FAILED,
        f"{first['field']}: {first['message']}",
        {"field": first["field"], "problems": problems},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RecursionError):  # FastAPI's JSON parsing, on `[[[[...`
        return error_response(
            400, ErrorCode.INVALID_JSON, "the request body is JSON nested too deeply"
        )
    code = _HTTP_CODES.get(exc.status_code, ErrorCode.BAD_REQUEST)
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    if exc.status_code == 404 and message == "Not Found":
        message = "no such endpoint"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        message = "this endpoint does not support that method"
        headers["Allow"] = ", ".join(sorted(methods_at(request.app, request.url.path)))
    return error_response(exc.status_code, code, message, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, ErrorCode.INTERNAL, "internal error; the master's log has details")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """Races the database settled (another master's write won, a deadlock it broke) are a
    conflict to retry; a database out of reach is a pause; anything else a bug."""
    assert isinstance(exc, DBAPIError)
    state = sqlstate(exc) or ""
    if isinstance(exc, IntegrityError) or state in RETRYABLE_SQLSTATES:
        log.info("database conflict on %s %s: %s", request.method, request.url.path, state)
        return error_response(
            409,
            ErrorCode.CONFLICT,
            "another request changed the same data at the same moment; retry",
            headers={"Retry-After": "1"},
        )
    # psycopg reports a refused or dropped connection without a SQLSTATE (SQLite's "locked" is
    # not one of these: its driver module is sqlite3).
    lost = not state and type(exc.orig).__module__.startswith("psycopg")
    if exc.connection_invalidated or state.startswith("08") or lost:
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            ErrorCode.UNAVAILABLE,
            "the master cannot reach its database; retry shortly",
            headers={"Retry-After": "5"},
        )
    return await _unexpected(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(GdosError, _gdos_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": desc, "model": ErrorOut}
    for code, desc in {
        400: "Malformed request",
        401: "No or invalid credentials",
        403: "Not allowed for this role",
        404: "Unknown id",
        409: "Conflict with the current state",
        429: "Too many attempts; see Retry-After",
        422: "Invalid content",
    }.items()
}
