"""Gathering concurrent calls into one round trip (group commit).

Callers ``submit`` one item each and await their own result. A batch starts at the end of the event loop's
turn, not at the first submit: every caller that turn ran (the requests that one read from the sockets woke)
goes in it, where starting at once gave the first caller a batch, and a slot, of its own. Whatever arrives while
the slots are busy goes out together as the next batch. Under light load a batch is one item and waits one
loop turn; under heavy load one statement serves hundreds of callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# Told after each batch: its size, how long its oldest item waited for it to start (batches queued behind one
# another show here), and how long it held its slot.
OnFlush = Callable[[int, float, float], None]


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
        on_flush: OnFlush | None = None,
    ) -> None:
        self._flush_items = flush
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._on_flush = on_flush
        self._waiting: list[tuple[Item, asyncio.Future[Result], float]] = []
        self._in_flight = 0
        self._kick_scheduled = False

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future, time.perf_counter()))
        if not self._kick_scheduled:
            self._kick_scheduled = True
            loop.call_soon(self._kick)
        return await future

    def _kick(self) -> None:
        self._kick_scheduled = False
        while self._waiting and self._in_flight < self.max_in_flight:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._flush(batch))

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[Result], float]]) -> None:
        started = time.perf_counter()
        try:
            results = await self._flush_items([item for item, _, _ in batch])
        except Exception as exc:  # every caller of the batch gets the error, none is left waiting
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future, _), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            if self._on_flush is not None:
                self._on_flush(len(batch), started - batch[0][2], time.perf_counter() - started)
            self._kick()
