"""What one fake provider was asked and answered: bounded, in memory, for the ``/_sandbox`` routes.

The event loop is the only writer, so nothing here needs a lock.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from typing import Any

from prometheus_client import Counter as MetricCounter

from functions.sandbox.faults import Faults

CALLS = MetricCounter(
    "notify_sandbox_calls_total", "Calls to the fake providers, by the status answered", ["provider", "status"]
)

Record = dict[str, Any]


class Ledger:
    """One provider's calls (every one, with its status), the accepted ones, counts, and its faults."""

    def __init__(self, provider: str, max_records: int, default_faults: Faults) -> None:
        self.provider = provider
        self.calls: deque[Record] = deque(maxlen=max_records)
        self.messages: deque[Record] = deque(maxlen=max_records)
        self.stats: Counter[int] = Counter()
        self.default_faults = default_faults
        self.faults = dataclasses.replace(default_faults)
        self._metrics: dict[int, Any] = {}

    def record(self, entry: Record) -> None:
        """Keep a call; an accepted one (2xx) also joins the messages that went out."""
        status: int = entry["status"]
        self.calls.append(entry)
        self.stats[status] += 1
        metric = self._metrics.get(status) or self._metrics.setdefault(status, CALLS.labels(self.provider, str(status)))
        metric.inc()
        if status < 300:
            self.messages.append(entry)

    def clear(self) -> None:
        self.calls.clear()
        self.messages.clear()
        self.stats.clear()

    def reset_faults(self) -> None:
        self.faults = dataclasses.replace(self.default_faults)
