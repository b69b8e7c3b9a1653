"""What one fake provider was asked and answered: bounded, in memory, for the ``/_sandbox`` routes.

A call is kept small (its raw body, status, time, id); the listing decodes it when asked. The event loop is
the only writer, so nothing here needs a lock.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter as MetricCounter
from starlette.responses import Response

from functions.sandbox.calls import parse_json
from functions.sandbox.faults import Faults

CALLS = MetricCounter(
    "notify_sandbox_calls_total", "Calls to the fake providers, by the status answered", ["provider", "status"]
)

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Call:
    status: int
    received_at: float
    auth_valid: bool
    raw: bytes | None  # the body as received; None when it was not read or was too large
    provider_message_id: str | None = None
    account: str | None = None  # the fingerprint of the key the call presented


class Ledger:
    """One provider's calls (every one, with its status), the accepted ones, counts, and its faults.

    ``describe`` turns a decoded request body into the fields the listing shows (recipients, text, ...).
    """

    def __init__(
        self, provider: str, max_records: int, default_faults: Faults, describe: Callable[[Any], Record]
    ) -> None:
        self.provider = provider
        self.calls: deque[Call] = deque(maxlen=max_records)
        self.messages: deque[Call] = deque(maxlen=max_records)
        self.stats: Counter[int] = Counter()
        self.default_faults = default_faults
        self.faults = dataclasses.replace(default_faults)
        self._describe = describe
        self._metrics: dict[int, Any] = {}

    def record(self, call: Call) -> None:
        """Keep a call; an accepted one (2xx) also joins the messages that went out."""
        self.calls.append(call)
        self.stats[call.status] += 1
        metric = self._metrics.get(call.status)
        if metric is None:
            metric = self._metrics[call.status] = CALLS.labels(self.provider, str(call.status))
        metric.inc()
        if call.status < 300:
            self.messages.append(call)

    def answer(
        self,
        received_at: float,
        raw: bytes | None,
        response: Response,
        *,
        auth_valid: bool = True,
        provider_message_id: str | None = None,
        account: str | None = None,
    ) -> Response:
        """Record the call with the status it is about to get, and hand the response back."""
        self.record(Call(response.status_code, received_at, auth_valid, raw, provider_message_id, account))
        return response

    def view(self, call: Call) -> Record:
        """One call as the listing shows it; ``body`` is the JSON sent (or its text, when it was not JSON)."""
        body = parse_json(call.raw)
        if body is None and call.raw:
            body = call.raw.decode(errors="replace")
        return {
            "provider": self.provider,
            "provider_message_id": call.provider_message_id,
            "status": call.status,
            "received_at": call.received_at,
            "auth_valid": call.auth_valid,
            "account": call.account,
            **self._describe(body),
            "body": body,
        }

    def clear(self) -> None:
        self.calls.clear()
        self.messages.clear()
        self.stats.clear()

    def reset_faults(self) -> None:
        self.faults = dataclasses.replace(self.default_faults)
