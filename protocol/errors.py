"""Error codes shared by the REST API, the agent channel and the clients.

Every error on the wire is `{"error": {"code", "message", "details"}}`; `code` is one of these.
"""

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_JSON = "invalid_json"
    VALIDATION_FAILED = "validation_failed"
    UNAUTHENTICATED = "unauthenticated"
    INVALID_CREDENTIALS = "invalid_credentials"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    ALREADY_EXISTS = "already_exists"
    IN_USE = "in_use"
    NODE_OFFLINE = "node_offline"
    INVALID_STATE = "invalid_state"
    TOO_LARGE = "too_large"
    PRECONDITION_FAILED = "precondition_failed"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_PACKAGE = "invalid_package"
    INVALID_MANIFEST = "invalid_manifest"
    UNSAFE_ARCHIVE = "unsafe_archive"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    OS_MISMATCH = "os_mismatch"
    DEPLOY_FAILED = "deploy_failed"
    START_FAILED = "start_failed"
    STOP_FAILED = "stop_failed"
    PROCESS_IDENTITY = "process_identity_mismatch"
    PROCESS_NOT_FOUND = "process_not_found"
    AMBIGUOUS_MATCH = "ambiguous_match"
    STORAGE_FULL = "storage_full"
    STORAGE_ERROR = "storage_error"
    TIMEOUT = "timeout"
    REQUEST_TIMEOUT = "request_timeout"  # the client sent its request body too slowly
    TOO_MANY_REQUESTS = "too_many_requests"
    UNSUPPORTED = "unsupported"
    UNAVAILABLE = "unavailable"  # the master is busy (restoring a backup); retry shortly
    INTERNAL = "internal_error"


class GdosError(Exception):
    """An error that knows its wire code; raised below the API layer, translated once at the edge."""

    def __init__(
        self, code: ErrorCode, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def to_wire(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message, "details": self.details}
