"""The channel workers' consume loop: owns the Kafka consumer, the offsets and the in-flight bound.

Records are handled concurrently by ``lib.delivery.handle``: up to ``concurrency`` provider calls at once, and
twice that many records held (claims and status writes overlap the calls). An offset is
committed only when every record before it in its partition is finished, so a crash or a rebalance
re-delivers what was not finished, and the claim in PostgreSQL keeps that from becoming a second send.
All consumer calls run on one dedicated thread; rebalance callbacks (on that thread) wait for the
revoked partitions' in-flight messages before committing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge

from lib.delivery.offsets import TP, OffsetTracker
from lib.delivery.pipeline import DeliveryContext, Outcome, handle
from lib.delivery.settings import WorkerSettings
from lib.domain.errors import NotifyError

log = logging.getLogger(__name__)
T = TypeVar("T")

IN_FLIGHT = Gauge("notify_worker_in_flight", "Messages being handled", ["channel"])
CONSUMER_LAG = Gauge("notify_worker_consumer_lag", "Records behind the partition's end", ["channel", "partition"])


@dataclass
class _InFlight:
    tp: TP
    offset: int
    protected: bool = False  # inside a provider call or writing its outcome: wait for it, never cancel


class ChannelWorker:
    def __init__(self, settings: WorkerSettings, ctx: DeliveryContext, *, commit_interval_s: float = 0.5) -> None:
        self.settings = settings
        self.ctx = ctx
        self.topic = settings.kafka.topic(settings.channel)
        self.tracker = OffsetTracker()
        self.tasks: dict[asyncio.Task[None], _InFlight] = {}
        self.commit_interval_s = commit_interval_s
        # `concurrency` bounds the provider calls in flight (ctx.provider_slots); twice as many messages may be
        # held, so claims and status writes overlap the calls instead of idling a provider slot.
        self.max_messages = 2 * settings.concurrency
        self.last_poll = 0.0
        self.assigned: set[TP] = set()
        self._paused = False
        self._room = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{settings.channel}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer = Consumer(self._consumer_config())

    def _consumer_config(self) -> dict[str, Any]:
        return {
            **self.settings.kafka.client_config(),
            "group.id": self.settings.consumer_group,
            "client.id": f"notify-{self.settings.channel}-{socket.gethostname()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "cooperative-sticky",
            "statistics.interval.ms": 5000,
            "stats_cb": self._on_stats,
            "max.poll.interval.ms": 300_000,
            # A broker that restarts after an outage waits this long for the old member before a rebalance, and
            # the default (45 s) was the whole recovery time after a 30 s broker kill (the fault suite).
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            # A connection cut without a reset (a partition, a dead node) is dropped and dialled again after this,
            # instead of waiting out TCP's retransmission backoff (about 24 s lost after a 30 s cut).
            "socket.timeout.ms": 10_000,
            # A resumed or idle partition is fetched again within 100 ms, not the default 500.
            "fetch.wait.max.ms": 100,
        }

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._thread, lambda: fn(*args, **kwargs))

    # --- the loop -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        await self._call(
            self._consumer.subscribe,
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                room = self.max_messages - len(self.tasks)
                if room <= 0:
                    # Full: wait for a message to finish. Records keep arriving in librdkafka's local queue;
                    # only a long stall pauses the partitions, so the consumer keeps polling (and its place
                    # in the group) while every in-flight message waits, e.g. on an open circuit.
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), timeout=5.0)
                    room = self.max_messages - len(self.tasks)
                await self._call(self._set_paused, room <= 0)
                messages = await self._call(self._fetch, room)
                self.last_poll = time.monotonic()
                for message in messages:
                    self._take(message)
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    await self._call(self._commit)
                    last_commit = time.monotonic()
            await self._drain(set(self.assigned), self.settings.shutdown_grace_s)
            await self._call(self._commit)
        finally:
            await self._call(self._consumer.close)
            self._thread.shutdown(wait=True)

    def _fetch(self, room: int) -> list[Message]:
        """Up to ``room`` records: wait at most 100 ms for the first, then take what is already here."""
        first = self._consumer.poll(0.1)
        if first is None:
            return []
        return [first, *self._consumer.consume(room - 1, 0)] if room > 1 else [first]

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(error)})
            return
        tp = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        self.tracker.started(tp, offset)
        entry = _InFlight(tp, offset)
        task = asyncio.create_task(self._handle(message, entry))
        self.tasks[task] = entry
        IN_FLIGHT.labels(self.settings.channel).set(len(self.tasks))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)
        IN_FLIGHT.labels(self.settings.channel).set(len(self.tasks))
        self._room.set()

    async def _handle(self, message: Message, entry: _InFlight) -> None:
        """Handle one record until it is finished; a failure of our own (database down) retries, never skips."""
        ctx = dataclasses.replace(self.ctx, on_call_state=lambda protected: setattr(entry, "protected", protected))
        delay = 0.5
        while True:
            try:
                outcome = await handle(message.value() or b"", message.key() or b"", ctx)
                break
            except NotifyError as exc:
                log.warning("could not handle a record; retrying", extra={"error": exc.message, "offset": entry.offset})
            except Exception:
                log.exception("unexpected error handling a record; retrying", extra={"offset": entry.offset})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        if outcome is not Outcome.RELEASED:
            self.tracker.finished(entry.tp, entry.offset)

    async def _drain(self, tps: set[TP], grace_s: float) -> None:
        """Give back what waits, let what is inside a provider call finish (within the grace period)."""
        mine = [t for t, e in self.tasks.items() if e.tp in tps]
        for task in mine:
            if not self.tasks[task].protected:
                task.cancel()
        if mine:
            _done, pending = await asyncio.wait(mine, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)

    # --- consumer thread: pausing, committing, rebalancing ------------------------------------------

    def _set_paused(self, paused: bool) -> None:
        if paused == self._paused:
            return
        partitions = self._consumer.assignment()
        if paused:
            self._consumer.pause(partitions)
        else:
            self._consumer.resume(partitions)
        self._paused = paused

    def _commit(self, only: set[TP] | None = None) -> None:
        offsets = self.tracker.committable(only)
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
            )
            self.tracker.committed(offsets)
        except KafkaException as exc:
            log.warning("offset commit failed; will retry", extra={"error": str(exc)})

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned |= {(p.topic, p.partition) for p in partitions}
        if self._paused:
            consumer.pause(partitions)
        log.info("partitions assigned", extra={"partitions": sorted(p.partition for p in partitions)})

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        assert self._loop is not None
        drained = asyncio.run_coroutine_threadsafe(self._drain(tps, self.settings.shutdown_grace_s), self._loop)
        with contextlib.suppress(Exception):
            drained.result(timeout=self.settings.shutdown_grace_s + 5)
        self._commit(tps)
        self._forget(tps)
        log.info("partitions revoked", extra={"partitions": sorted(p for _, p in tps)})

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        assert self._loop is not None
        # Not waited for here; what is inside a provider call may still finish and record its outcome (the claim
        # guards against the partition's new owner), which beats cancelling a call the provider may have taken.
        asyncio.run_coroutine_threadsafe(self._drain(tps, self.settings.shutdown_grace_s), self._loop)
        self._forget(tps)
        log.warning("partitions lost", extra={"partitions": sorted(p for _, p in tps)})

    def _forget(self, tps: set[TP]) -> None:
        self.tracker.forget(tps)
        self.assigned -= tps
        for _, partition in tps:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.settings.channel, str(partition))

    def _on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        for partition, data in stats.get("topics", {}).get(self.topic, {}).get("partitions", {}).items():
            if (
                partition != "-1"
                and data.get("consumer_lag", -1) >= 0
                and (self.topic, int(partition)) in self.assigned
            ):
                CONSUMER_LAG.labels(self.settings.channel, partition).set(data["consumer_lag"])
