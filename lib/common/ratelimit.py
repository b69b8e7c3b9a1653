"""A token bucket: the per-site request limit in the API and the per-provider send rate in workers."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.capacity = burst if burst is not None else max(1.0, rate_per_s)
        self._tokens = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def wait_for(self, count: float = 1.0) -> float:
        """Seconds until ``count`` tokens would be there (0.0: now), taking nothing."""
        self._refill()
        return 0.0 if self._tokens >= count else (count - self._tokens) / self.rate

    def try_take(self, count: float = 1.0) -> float:
        """Take ``count`` tokens: 0.0 when granted, else the seconds until they are available."""
        self._refill()
        if self._tokens >= count:
            self._tokens -= count
            return 0.0
        return (count - self._tokens) / self.rate

    def take_up_to(self, count: int) -> int:
        """Take as many whole tokens as there are, up to ``count``; how many were taken."""
        self._refill()
        taken = min(count, int(self._tokens))
        self._tokens -= taken
        return taken

    def reserve(self) -> float:
        """Take one token now or in the future; return how long the caller must wait for it."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self, count: float = 1.0) -> None:
        """Return tokens taken for work that turned out not to count against the limit."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + count)


class TokenBuckets(Generic[K]):
    """One bucket per key (a site), made at first use and made afresh when its rate or burst changes."""

    def __init__(self) -> None:
        self._buckets: dict[K, TokenBucket] = {}

    def get(self, key: K, rate_per_s: float, burst: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate_per_s or bucket.capacity != burst:
            bucket = self._buckets[key] = TokenBucket(rate_per_s, burst=burst)
        return bucket
