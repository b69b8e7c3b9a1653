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
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import uvloop
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Gauge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib.adapters import db
from lib.adapters.http import EXCEPTION_HANDLERS, QuietServer, healthz, metrics_endpoint
from lib.adapters.kafka import Publisher
from lib.adapters.providers import Provider
from lib.common.logs import configure_logging, tune_gc
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, RetryPolicy
from lib.common.settings import DatabaseSettings, Env, KafkaSettings
from lib.delivery.pipeline import DeliveryContext, DeliveryStore, Outcome, handle
from lib.domain.errors import NotifyError

log = logging.getLogger(__name__)
T = TypeVar("T")
TP = tuple[str, int]

IN_FLIGHT = Gauge("notify_worker_in_flight", "Messages being handled", ["channel"])
CONSUMER_LAG = Gauge("notify_worker_consumer_lag", "Records behind the partition's end", ["channel", "partition"])


@dataclass(frozen=True)
class WorkerSettings:
    channel: str
    database: DatabaseSettings
    kafka: KafkaSettings
    consumer_group: str
    concurrency: int = 64
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    lease_s: float = 60.0
    shutdown_grace_s: float = 25.0
    provider_timeout_s: float = 15.0
    rate_per_s: float = 0.0
    circuit_failure_threshold: int = 5
    circuit_open_s: float = 10.0
    max_retries: int = 3
    retry_base_s: float = 1.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Env, channel: str, *, default_rate_per_s: float) -> WorkerSettings:
        return cls(
            channel=channel,
            database=DatabaseSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            consumer_group=env.text("KAFKA_CONSUMER_GROUP", f"notify-{channel}"),
            concurrency=env.integer("WORKER_CONCURRENCY", 64, minimum=1),
            http_host=env.text("WORKER_HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("WORKER_HTTP_PORT", 8081, minimum=1),
            lease_s=env.number("WORKER_LEASE_SECONDS", 60.0, minimum=1),
            shutdown_grace_s=env.number("WORKER_SHUTDOWN_GRACE_SECONDS", 25.0, minimum=0),
            provider_timeout_s=env.number("PROVIDER_TIMEOUT_SECONDS", 15.0, minimum=0.1),
            rate_per_s=env.number("PROVIDER_RATE_PER_SEC", default_rate_per_s, minimum=0),
            circuit_failure_threshold=env.integer("CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1),
            circuit_open_s=env.number("CIRCUIT_OPEN_SECONDS", 10.0, minimum=0.1),
            max_retries=env.integer("PROVIDER_MAX_RETRIES", 3, minimum=0),
            retry_base_s=env.number("PROVIDER_RETRY_BASE_SECONDS", 1.0, minimum=0),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )


class OffsetTracker:
    """Per partition: offsets in flight and the next offset after the highest seen."""

    def __init__(self) -> None:
        self._in_flight: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def started(self, tp: TP, offset: int) -> None:
        self._in_flight.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finished(self, tp: TP, offset: int) -> None:
        if tp in self._in_flight:
            self._in_flight[tp].discard(offset)

    def committable(self, only: set[TP] | None = None) -> dict[TP, int]:
        """Offsets worth committing now: below the oldest unfinished record, changed since the last commit."""
        found = {}
        for tp, next_offset in self._next.items():
            if only is not None and tp not in only:
                continue
            pending = self._in_flight.get(tp)
            offset = min(pending) if pending else next_offset
            if self._committed.get(tp) != offset:
                found[tp] = offset
        return found

    def committed(self, offsets: dict[TP, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self._in_flight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)


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
        asyncio.run_coroutine_threadsafe(self._drain(tps, 0), self._loop)
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


# --- the process: health server + worker, SIGTERM handling -----------------------------------------


def health_app(worker: ChannelWorker, pool: db.Pool) -> Starlette:
    async def readyz(_request: Request) -> Response:
        checks = {"kafka": "ok" if time.monotonic() - worker.last_poll < 10 else "not polling"}
        try:
            async with db.unavailable_on_error(), pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except NotifyError as exc:
            checks["postgres"] = exc.message
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "checks": checks,
                "in_flight": len(worker.tasks),
                "partitions": sorted(p for _, p in worker.assigned),
            },
            status_code=200 if ready else 503,
        )

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@contextlib.asynccontextmanager
async def delivery_context(settings: WorkerSettings, provider: Provider) -> AsyncIterator[tuple[DeliveryContext, Any]]:
    pool = db.create_pool(settings.database, name=f"worker-{settings.channel}")
    await pool.open(wait=False)
    dead_letters = Publisher(settings.kafka)
    ctx = DeliveryContext(
        channel=settings.channel,
        store=DeliveryStore(pool, worker_id(), settings.lease_s),
        provider=provider,
        dead_letters=dead_letters,
        dlq_topic=settings.kafka.dlq_topic(settings.channel),
        policy=RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.retry_base_s),
        breaker=CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_open_s),
        limiter=TokenBucket(settings.rate_per_s) if settings.rate_per_s > 0 else None,
        provider_slots=asyncio.Semaphore(settings.concurrency),
    )
    try:
        yield ctx, pool
    finally:
        await provider.aclose()
        await asyncio.to_thread(dead_letters.close)
        await pool.close()


async def serve(settings: WorkerSettings, provider: Provider) -> None:
    """Run one worker process until SIGTERM/SIGINT; then drain and exit normally."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with delivery_context(settings, provider) as (ctx, pool):
        worker = ChannelWorker(settings, ctx)
        http = QuietServer.for_app(health_app(worker, pool), settings.http_host, settings.http_port)
        http_task = asyncio.create_task(http.serve())
        tune_gc()
        log.info(
            "worker started",
            extra={"channel": settings.channel, "group": settings.consumer_group, "worker_id": ctx.store.worker_id},
        )
        try:
            await worker.run(stop)
        finally:
            http.should_exit = True
            await http_task
    log.info("worker stopped", extra={"channel": settings.channel})


def run(settings: WorkerSettings, provider_factory: Callable[[WorkerSettings], Provider]) -> None:
    configure_logging(settings.log_level)
    uvloop.run(serve(settings, provider_factory(settings)))
