"""The admin token check (``NOTIFY_ADMIN_TOKEN``), throttled per client."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from lib.common.settings import Secret
from lib.common.throttling import FailureWindows
from lib.domain.errors import Unauthorized
from lib.services.auth import throttled

log = logging.getLogger(__name__)

ADMIN_AUTH_FAILURES = Counter(
    "notify_admin_auth_failures_total", "Refused admin authentications, by reason", ["reason"]
)
_ADMIN_FAILURES = {reason: ADMIN_AUTH_FAILURES.labels(reason) for reason in ("missing", "wrong_token", "throttled")}


class AdminGate:
    """The admin token check, throttled per client: past ``failure_limit`` failures in the window every attempt
    from that client is refused unchecked (answering a right token then would tell a guesser it found it)."""

    def __init__(
        self,
        token: Secret,
        *,
        failure_limit: int = 10,
        failure_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._failures = FailureWindows(failure_window_s)
        self._failure_limit = failure_limit
        self._clock = clock

    def check(self, authorization: str | None, client: str = "") -> None:
        now = self._clock()
        if self._failures.count(client, now) >= self._failure_limit:
            _ADMIN_FAILURES["throttled"].inc()
            raise throttled("too many failed admin token checks from this client", self._failures, client, now)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            self._failed(client, "missing")
            raise Unauthorized("admin routes need Authorization: Bearer <admin token>", code="admin_token_required")
        if not hmac.compare_digest(token.strip().encode(), self._token.reveal().encode()):
            self._failed(client, "wrong_token")
            raise Unauthorized("the admin token is not valid", code="invalid_admin_token")

    def _failed(self, client: str, reason: str) -> None:
        _ADMIN_FAILURES[reason].inc()
        count = self._failures.add(client, self._clock())
        if count in (1, self._failure_limit):
            log.warning(
                "admin authentication refused", extra={"reason": reason, "client": client, "failures_in_window": count}
            )
