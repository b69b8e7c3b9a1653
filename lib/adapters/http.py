"""HTTP pieces shared by every deployable's small Starlette app: JSON errors, body reading, probes, metrics."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lib.domain.errors import (
    BadRequest,
    InvalidJSON,
    NotifyError,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
)
from lib.domain.validation import strict_int

log = logging.getLogger(__name__)

REQUESTS = Counter("notify_http_requests_total", "HTTP requests", ["method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "notify_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def error_response(error: NotifyError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, TooManyRequests) else None
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


async def on_notify_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotifyError)
    return error_response(exc)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = {"error": {"code": code, "message": str(exc.detail), "details": None}}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # Never a stack trace to the client; the log has it.
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    body = {"error": {"code": "internal_error", "message": "an unexpected error occurred", "details": None}}
    return JSONResponse(body, status_code=500)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    NotifyError: on_notify_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}


async def read_json(request: Request, max_bytes: int) -> Any:
    """The request's JSON body, refusing the wrong media type, oversized bodies and malformed JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        length = strict_int(declared)
        if length is None:
            raise BadRequest("Content-Length must be a number of bytes", code="invalid_content_length")
        if length > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc}") from None


async def metrics_endpoint(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class RequestMetrics:
    """Pure ASGI middleware: request counts and latency by route template (never by raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # labels() costs a lock and a dict build per call: keep the children, there are few of them.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            key = (scope["method"], route, str(status))
            counter = self._counters.get(key) or self._counters.setdefault(key, REQUESTS.labels(*key))
            counter.inc()
            timer = self._timers.get(key[:2]) or self._timers.setdefault(key[:2], REQUEST_SECONDS.labels(*key[:2]))
            timer.observe(time.perf_counter() - started)


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling, for a process that owns SIGTERM itself (workers, operator)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @classmethod
    def for_app(cls, app: ASGIApp, host: str, port: int) -> QuietServer:
        """A side server (health, metrics): no access log, no lifespan, logs through our JSON handler."""
        return cls(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off"))
