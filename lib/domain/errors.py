"""One error hierarchy for the whole service.

Every error a client can cause or meet carries a stable ``code`` and an HTTP status; the API turns it into
``{"error": {"code", "message", "details"}}``. Workers use ``temporary`` to decide between retrying and
failing a message for good.
"""

from __future__ import annotations

from typing import Any


class NotifyError(Exception):
    status: int = 500
    code: str = "internal_error"
    temporary: bool = False
    # Set when the request's body was left unread: the connection must close after the answer, or the rest of
    # the body would be read as the next request.
    body_unread: bool = False

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(NotifyError):
    status, code = 400, "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class Unauthorized(NotifyError):
    status, code = 401, "unauthorized"


class Forbidden(NotifyError):
    status, code = 403, "forbidden"


class NotFound(NotifyError):
    status, code = 404, "not_found"


class Conflict(NotifyError):
    status, code = 409, "conflict"


class RequestTimeout(NotifyError):
    status, code, temporary = 408, "request_timeout", True


class PayloadTooLarge(NotifyError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(NotifyError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(NotifyError):
    status, code = 422, "validation_failed"


class TooManyRequests(NotifyError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class Unavailable(NotifyError):
    """A dependency (PostgreSQL, Kafka, a provider) cannot be reached right now."""

    status, code, temporary = 503, "unavailable", True
