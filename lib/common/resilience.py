"""Retry policy and circuit breaker: small objects that decide, never sleep themselves."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True)
class RetryPolicy:
    """Up to ``max_retries`` retries after the first attempt, backing off base * 2^n plus jitter."""

    max_retries: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.2  # each delay is stretched by up to this share, so retries do not stampede

    def delay_s(
        self, retry_number: int, retry_after_s: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """The wait before retry ``retry_number`` (1-based); a provider's Retry-After wins when longer."""
        backoff: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry_number - 1))
        backoff *= 1 + self.jitter * rand()
        if retry_after_s is not None:
            backoff = max(backoff, min(retry_after_s, self.max_delay_s))
        return backoff

    def should_retry(self, retries_done: int) -> bool:
        return retries_done < self.max_retries


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive temporary failures; after ``open_s`` lets one probe through.

    A successful probe closes it; a failed one opens it again for twice as long (up to ``max_open_s``).
    Messages that find it open wait: they are neither failed nor dead-lettered for it.
    A 429 is not a failure of the provider but an order to slow down: ``hold`` makes every caller wait out
    its Retry-After, without counting towards opening the circuit.

    The probe is the one caller let through while half-open; until its outcome is recorded nobody else goes. A
    probe given up before its call (its message revoked or shut down) is handed back with ``abandon_probe``; one
    that never reports at all is replaced after ``probe_timeout_s``, so a lost probe cannot hold the circuit shut.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        open_s: float = 10.0,
        max_open_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        probe_timeout_s: float = 30.0,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.base_open_s = open_s
        self.max_open_s = max_open_s
        self._clock = clock
        self._failures = 0
        self._open_s = open_s
        self._opened_at: float | None = None
        self.probe_timeout_s = probe_timeout_s
        self._probe_since: float | None = None
        self._held_until = 0.0

    def hold(self, seconds: float) -> None:
        self._held_until = max(self._held_until, self._clock() + seconds)

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self._open_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def acquire(self) -> float:
        """0.0: go ahead and call the provider; else the seconds to wait before asking again."""
        held = self._held_until - self._clock()
        if held > 0:
            return held
        state = self.state
        if state is CircuitState.CLOSED:
            return 0.0
        if state is CircuitState.HALF_OPEN and not self.probe_out:
            self._probe_since = self._clock()
            return 0.0
        assert self._opened_at is not None
        return max(0.05, self._opened_at + self._open_s - self._clock()) if state is CircuitState.OPEN else 0.25

    @property
    def probe_out(self) -> bool:
        """A probe is out and may still report (it went less than ``probe_timeout_s`` ago)."""
        return self._probe_since is not None and self._clock() - self._probe_since < self.probe_timeout_s

    def abandon_probe(self) -> None:
        """The probe's caller gives up before calling: the next caller probes instead."""
        self._probe_since = None

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_since = None
        self._open_s = self.base_open_s

    def record_failure(self) -> None:
        if self._probe_since is not None:  # the probe failed: open again, for longer
            self._probe_since = None
            self._open_s = min(self.max_open_s, self._open_s * 2)
            self._opened_at = self._clock()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold and self._opened_at is None:
            self._opened_at = self._clock()

    def record_neutral(self) -> None:
        """A call that said nothing about the provider's health (e.g. a rejected recipient)."""
        if self._probe_since is not None:
            self.record_success()
