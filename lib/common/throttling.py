"""Limits on attempts, kept in memory: failures per key in a window, a gate that lets some waiters in first,
and a count of what is in flight per key."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class FailureWindows:
    """Failures per key in a fixed window (the first failure opens it), for at most ``max_keys`` keys."""

    def __init__(self, window_s: float, max_keys: int = 10_000) -> None:
        self._windows: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._window_s = window_s
        self._max_keys = max_keys

    def count(self, key: Hashable, now: float) -> int:
        window = self._windows.get(key)
        return window[1] if window and now - window[0] < self._window_s else 0

    def add(self, key: Hashable, now: float) -> int:
        """Count one failure; the count in the window, this one included."""
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self._window_s:
            started, count = now, 0
        self._windows[key] = (started, count + 1)
        self._windows.move_to_end(key)
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
        return count + 1

    def retry_after(self, key: Hashable, now: float) -> int:
        started = self._windows.get(key, (now, 0))[0]
        return int(self._window_s - (now - started)) + 1


class PriorityGate:
    """``slots`` holders at a time; waiters of a lower ``priority`` number are let in first."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        if self._free and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # let in, then cancelled: pass the slot on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            turn = heapq.heappop(self._waiting)[2]
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class InFlight(Generic[K]):
    """How many operations of each key are under way (keys with none take no room)."""

    def __init__(self) -> None:
        self._counts: dict[K, int] = {}

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    @contextlib.contextmanager
    def held(self, key: K) -> Iterator[None]:
        self._counts[key] = self._counts.get(key, 0) + 1
        try:
            yield
        finally:
            left = self._counts.pop(key) - 1
            if left:
                self._counts[key] = left
