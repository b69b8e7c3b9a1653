"""Provider adapters: each sends one message and answers with the provider's message id, or raises
``DeliveryError`` saying whether trying again could help."""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any, Protocol

import httpx

from lib.common.settings import Secret
from lib.domain.errors import NotifyError
from lib.domain.notification import OutgoingMessage


class DeliveryError(NotifyError):
    """A failed provider call. ``temporary``: worth retrying (timeouts, 5xx, 429). ``unanswered``: the request
    went out and no answer came back (a read timeout, a dropped connection), so the provider may have taken it."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        temporary: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
        unanswered: bool = False,
    ) -> None:
        super().__init__(message, code=code)
        self.temporary = temporary
        self.http_status = status
        self.retry_after_s = retry_after_s
        self.unanswered = unanswered


class Provider(Protocol):
    name: str

    async def send(self, message: OutgoingMessage) -> str: ...

    async def aclose(self) -> None: ...


class ProviderSettings(Protocol):
    """A provider account's settings (read from the environment by its adapter), able to open a client."""

    def connect(self, *, timeout_s: float, max_connections: int) -> Provider: ...

    def with_api_key(self, api_key: Secret) -> ProviderSettings:
        """The same account settings with another key (a site's own account)."""
        ...


# The longest wait a provider's Retry-After can impose: it holds the whole account's circuit, so a mistaken (or
# hostile) "Retry-After: 1e999" must not stop a channel for good.
MAX_RETRY_AFTER_S = 3600.0


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date, within 0..MAX_RETRY_AFTER_S; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (ValueError, TypeError, IndexError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


# Permanent answers: the same request will never succeed. Everything 5xx, 408 and 429 is temporary.
_PERMANENT_CODES = {
    400: "provider_rejected",
    401: "provider_auth_failed",
    403: "provider_forbidden",
    404: "provider_rejected",
    413: "provider_payload_too_large",
    422: "invalid_recipient",
}


def error_for_response(provider: str, response: httpx.Response, detail: str) -> DeliveryError:
    status = response.status_code
    message = f"{provider} answered {status}: {detail}"[:1000]
    if status == 429:
        return DeliveryError(
            message,
            code="provider_rate_limited",
            temporary=True,
            status=status,
            retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        )
    if status >= 500 or status == 408:
        return DeliveryError(message, code="provider_unavailable", temporary=True, status=status)
    return DeliveryError(
        message, code=_PERMANENT_CODES.get(status, "provider_rejected"), temporary=False, status=status
    )


# Failures before the request left: the provider cannot have it. Anything else (a read timeout, a reset after
# sending) leaves the outcome unknown.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def error_for_transport(provider: str, exc: httpx.HTTPError) -> DeliveryError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    return DeliveryError(
        f"{provider} {kind}: {exc!r}"[:1000],
        code="provider_unreachable",
        temporary=True,
        unanswered=not isinstance(exc, _NOT_SENT),
    )


class HttpClients:
    """A few ``httpx.AsyncClient``s used in turn.

    httpcore's pool (1.0.9) slows down sharply as one client's connections grow: 64 concurrent requests
    through one client ran about 9 times slower here than through eight clients of eight connections.
    """

    PER_CLIENT = 8

    def __init__(self, timeout_s: float, max_connections: int) -> None:
        count = max(1, -(-max_connections // self.PER_CLIENT))
        limits = httpx.Limits(max_connections=self.PER_CLIENT, max_keepalive_connections=self.PER_CLIENT)
        self._clients = [httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits) for _ in range(count)]
        self._next = 0

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        client = self._clients[self._next]
        self._next = (self._next + 1) % len(self._clients)
        return await client.post(url, **kwargs)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def http_client(timeout_s: float, max_connections: int) -> HttpClients:
    return HttpClients(timeout_s, max_connections)
