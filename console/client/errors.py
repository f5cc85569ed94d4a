"""`ClientError`: every failure of a call, in the master's own words, or in ours when it was not
reached."""

from __future__ import annotations

import ssl
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)


class ClientError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details = details or {}

    @property
    def unreachable(self) -> bool:
        return self.status is None

    @property
    def endpoint_missing(self) -> bool:
        # The master answers an unknown route with 404 "no such endpoint" (or 405 when the path
        # exists for other methods); a 404 for an unknown *id* carries another message.
        if self.status == 405:
            return True
        return self.status == 404 and self.message in ("no such endpoint", "Not Found")

    def __str__(self) -> str:
        return self.message


def error_from(resp: httpx.Response) -> ClientError:
    """The API's `{"error": ...}` body, or a sentence naming the status when it has none."""
    try:
        err = resp.json()["error"]
        return ClientError(
            str(err["message"]),
            status=resp.status_code,
            code=str(err.get("code", "error")),
            details=err.get("details") or {},
        )
    except (ValueError, KeyError, TypeError):
        text = resp.text.strip().splitlines()[0][:200] if resp.text.strip() else ""
        reason = resp.reason_phrase or "error"
        msg = f"the master answered {resp.status_code} {reason}" + (f": {text}" if text else "")
        return ClientError(msg, status=resp.status_code, code=f"http_{resp.status_code}")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def transport_error(base_url: str, exc: Exception, method: str = "GET") -> ClientError:
    """No answer came: say why in a few words (refused, timed out, TLS), and whether a change
    may have been made all the same (the request went out, its answer was lost)."""
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
        what = f"TLS failed ({exc})"
    elif isinstance(exc, httpx.ConnectError):
        what = "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
    elif isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        what = f"the connection was cut ({exc})" if str(exc) else "the connection was cut"
    else:
        what = str(exc) or type(exc).__name__
    message = f"cannot reach the master at {base_url}: {what}"
    if method.upper() not in SAFE_METHODS and not isinstance(
        exc, httpx.ConnectError | httpx.ConnectTimeout
    ):
        message += " (the request may have been carried out before its answer was lost: look before trying again)"
    return ClientError(message, code="unreachable")


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ClientError(
            f"the master sent an unexpected {model.__name__}: {exc.errors()[0]['msg']}",
            code="bad_response",
        ) from None


def parse_list(model: type[M], data: Any) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_python(data)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise ClientError(
            f"the master sent an unexpected list of {model.__name__}: {exc.errors()[0]['msg']}",
            code="bad_response",
        ) from None
