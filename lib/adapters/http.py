"""HTTP pieces shared by every deployable's small Starlette app: JSON errors, body reading, probes, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lib.domain.errors import (
    BadRequest,
    InvalidJSON,
    NotifyError,
    PayloadTooLarge,
    RequestTimeout,
    TooManyRequests,
    Unavailable,
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
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, TooManyRequests) else {}
    if error.body_unread:
        headers["Connection"] = "close"
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


@dataclass
class BodyLimits:
    """What request bodies may take, across one process: each must arrive whole within ``timeout_s`` (a body
    sent a byte a second holds a connection and its buffer), and the bodies being read at once hold at most
    ``budget_bytes`` between them; past it a new body is refused with a 503 until the others are done."""

    timeout_s: float = 30.0
    budget_bytes: int = 64 * 1024 * 1024
    held: int = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.budget_bytes:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


async def read_json(request: Request, max_bytes: int, limits: BodyLimits | None = None) -> Any:
    """The request's JSON body, refusing the wrong media type, oversized, late or malformed bodies."""
    return parse_json_body(await read_body(request, max_bytes, limits))


async def read_body(request: Request, max_bytes: int, limits: BodyLimits | None = None) -> bytes:
    """The request's raw JSON body (a webhook's signature covers these very bytes), refusing the wrong media
    type, oversized or late bodies."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        length = strict_int(declared)
        if length is None:
            raise BadRequest("Content-Length must be a number of bytes", code="invalid_content_length")
        if length > max_bytes:
            raise _unread(PayloadTooLarge(f"the body is larger than {max_bytes} bytes"))
    limits = limits or BodyLimits()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes")
                if not limits.take(len(chunk)):
                    size -= len(chunk)
                    raise Unavailable("too many request bodies are being read at once; try again", code="server_busy")
                chunks.append(chunk)
    except NotifyError as exc:
        exc.body_unread = True
        raise
    except TimeoutError:
        raise _unread(RequestTimeout(f"the body did not arrive within {limits.timeout_s:g} s")) from None
    except ClientDisconnect:
        raise _unread(BadRequest("the client went away before its body arrived")) from None
    finally:
        limits.give(size)
    return b"".join(chunks)


def _unread(error: NotifyError) -> NotifyError:
    error.body_unread = True
    return error


def parse_json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSON(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidJSON("the body is not valid JSON: nested too deeply") from None


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


MAX_HEAD_BYTES = 32 * 1024  # the request line and headers together: what ingress-nginx takes by default (4 x 8k)


def _raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error response, for the transport itself (no app has seen the request)."""
    body = json.dumps({"error": {"code": code, "message": message, "details": None}}).encode()
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return (head + "connection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits a server that faces clients needs and uvicorn leaves out: a
    connection that never sends anything is closed after the keep-alive time (as an idle one is), a request head
    must arrive whole within ``head_timeout_s`` (slowloris) and stay within ``max_head_bytes``. Each refusal is
    the usual JSON error, and the connection is closed. ``for_limits`` makes the class uvicorn is given."""

    head_timeout_s: float = 20.0
    max_head_bytes: int = MAX_HEAD_BYTES
    _head_timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_limits(cls, head_timeout_s: float, max_head_bytes: int) -> type[GuardedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"head_timeout_s": head_timeout_s, "max_head_bytes": max_head_bytes})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._refused = False
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal of ours, surfacing as the parser's error, is answered already
            self._refuse(_raw_error(400, "Bad Request", "bad_request", msg))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_head_bytes:
            message = f"the request line and headers are larger than {self.max_head_bytes} bytes"
            self._refuse(_raw_error(431, "Request Header Fields Too Large", "headers_too_large", message))
            raise ValueError(message)  # stops the parser; data_received answers nothing more

    def _head_too_slow(self) -> None:
        message = f"the request head did not arrive within {self.head_timeout_s:g} s"
        self._refuse(_raw_error(408, "Request Timeout", "request_timeout", message))

    def _refuse(self, response: bytes) -> None:
        self._refused = True
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


LOOP_STALLS = Histogram(
    "notify_event_loop_stall_seconds",
    "How late the event loop ran a 10 ms timer, when later than 5 ms: time every request waited behind other work",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
STALLED = Counter(
    "notify_event_loop_stalled_seconds",
    "The loop thread's time over stalls: running (this process's own work) or not (waiting for a CPU, mostly)",
    ["part"],
)
STALL_S = 0.005


async def watch_event_loop(interval_s: float = 0.01) -> None:
    """Measure the event loop's stalls for as long as it runs: a timer due every ``interval_s`` that fires more
    than 5 ms late means every request waited that long. Whose fault: the loop thread's own CPU time over the
    stall's window (a long synchronous step, or a loop saturated with work: the code's) against the rest of it
    (runnable but waiting for a CPU shared with the database, the broker and the load: the machine's). The thread's
    CPU clock costs a fraction of a microsecond a tick; stalls over 100 ms are logged."""
    loop = asyncio.get_running_loop()
    while True:
        started, cpu_started = loop.time(), time.thread_time()
        await asyncio.sleep(interval_s)
        window = loop.time() - started
        late = window - interval_s
        if late <= STALL_S:
            continue
        running = time.thread_time() - cpu_started
        LOOP_STALLS.observe(late)
        STALLED.labels("running").inc(running)
        STALLED.labels("not_running").inc(max(window - running, 0.0))
        if late > 0.1:
            extra = {"stall_ms": round(late * 1000, 1), "running_ms": round(running * 1000, 1)}
            log.warning("event loop stalled", extra=extra)
