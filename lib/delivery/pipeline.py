"""Delivering one message: claim it in PostgreSQL, call the provider, retry or dead-letter, record the outcome.

``handle`` is the whole story of one Kafka record and knows nothing of offsets or partitions: the consume
loop (``lib.delivery.worker``) owns those. State moves PENDING -> PROCESSING -> SENT | FAILED, guarded by a claim
(``claimed_by`` + ``lease_until``), so a record delivered twice (rebalance, restart, replay, re-publish) is
sent once. The one window left is a crash after the provider accepted a message and before SENT was
written: the next owner takes over the expired claim and sends again, counted in
``notify_worker_possible_resends_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from lib.adapters import db
from lib.adapters.kafka import Publisher
from lib.adapters.providers import DeliveryError, Provider
from lib.common.batching import Batcher
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, RetryPolicy
from lib.domain.errors import NotifyError
from lib.domain.notification import NotificationRecord, OutgoingMessage
from lib.domain.vocabulary import MessageStatus

T = TypeVar("T")
log = logging.getLogger(__name__)

DELIVERIES = Counter("notify_worker_deliveries_total", "Messages finished, by outcome", ["channel", "outcome"])
PROVIDER_SECONDS = Histogram(
    "notify_worker_provider_seconds",
    "Provider call latency",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("notify_worker_retries_total", "Provider calls retried after a temporary failure", ["channel"])
DEAD_LETTERED = Counter("notify_worker_dead_lettered_total", "Records written to the dead-letter topic", ["channel"])
POSSIBLE_RESENDS = Counter(
    "notify_worker_possible_resends_total",
    "Messages taken over from an expired claim whose holder may have been inside a provider call",
    ["channel"],
)
CIRCUIT_STATE = Gauge("notify_worker_circuit_state", "0 closed, 1 half-open, 2 open", ["channel"])


class Outcome(Enum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # already final, or another worker holds it now
    RELEASED = "released"  # given back on shutdown: not finished, offset not committed


class DeliveryStore:
    """The worker's reads and writes of ``message_logs``; every write is guarded by the claim."""

    def __init__(self, pool: db.Pool, worker_id: str, lease_s: float) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_s = lease_s
        # Claims and SENT writes of messages handled at the same moment share one statement each.
        self._claims: Batcher[uuid.UUID, dict[str, Any] | None] = Batcher(self._claim_batch)
        self._sent: Batcher[tuple[uuid.UUID, str], bool] = Batcher(self._sent_batch)

    async def _one(self, name: str, **params: Any) -> dict[str, Any] | None:
        return await db.fetch_one(self.pool, name, params)

    async def claim(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        """The claimed row, or None when the message is not free to take."""
        return await self._claims.submit(message_id)

    async def _claim_batch(self, ids: list[uuid.UUID]) -> list[dict[str, Any] | None]:
        params = {"ids": ids, "worker": self.worker_id, "lease_s": self.lease_s}
        rows = {r["id"]: r for r in await db.fetch_all(self.pool, "claim_messages", params)}
        return [rows.get(message_id) for message_id in ids]

    async def state(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        return await self._one("message_state", id=message_id)

    async def start_attempt(self, message_id: uuid.UUID) -> bool:
        row = await self._one("start_attempt", id=message_id, worker=self.worker_id, lease_s=self.lease_s)
        return row is not None

    async def renew(self, message_id: uuid.UUID) -> bool:
        return await self._one("renew_lease", id=message_id, worker=self.worker_id, lease_s=self.lease_s) is not None

    async def record_error(self, message_id: uuid.UUID, entry: dict[str, Any]) -> None:
        params = {"id": message_id, "worker": self.worker_id, "error": entry["error"], "entry": json.dumps([entry])}
        await db.execute(self.pool, "record_attempt_error", params)

    async def mark_failed(self, message_id: uuid.UUID, code: str, error: str, entry: dict[str, Any]) -> bool:
        row = await self._one(
            "mark_failed", id=message_id, worker=self.worker_id, code=code, error=error, entry=json.dumps([entry])
        )
        return row is not None

    async def mark_unknown_failed(self, message_id: uuid.UUID, code: str, error: str) -> None:
        await self._one("mark_unknown_failed", id=message_id, code=code, error=error)

    async def release(self, message_ids: list[uuid.UUID]) -> None:
        await db.execute(self.pool, "release_claims", {"ids": message_ids, "worker": self.worker_id})

    async def mark_sent(self, message_id: uuid.UUID, provider_message_id: str) -> bool:
        return await self._sent.submit((message_id, provider_message_id))

    async def _sent_batch(self, items: list[tuple[uuid.UUID, str]]) -> list[bool]:
        params = {"ids": [i[0] for i in items], "provider_ids": [i[1] for i in items], "worker": self.worker_id}
        written = {r["id"] for r in await db.fetch_all(self.pool, "mark_sent_many", params)}
        return [message_id in written for message_id, _ in items]


@dataclass
class DeliveryContext:
    channel: str
    store: DeliveryStore
    provider: Provider
    dead_letters: Publisher
    dlq_topic: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    limiter: TokenBucket | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Set by the loop: True while this message is inside a provider call (so shutdown waits for it).
    on_call_state: Callable[[bool], None] = lambda _in_call: None
    # At most this many provider calls at once (the worker's concurrency); None: no bound of its own.
    provider_slots: asyncio.Semaphore | None = None


class ProviderTurn:
    """One message's place among the provider calls in flight: taken before its claim, given back as soon as the
    provider has answered. So a claimed message is (nearly) always one about to be inside a call, which keeps the
    possible re-send count honest after a crash, and the status write that follows never holds a slot."""

    def __init__(self, slots: asyncio.Semaphore | None) -> None:
        self._slots = slots
        self.held = False

    async def take(self) -> None:
        if self._slots is not None and not self.held:
            await self._slots.acquire()
            self.held = True

    def done(self) -> None:
        if self.held and self._slots is not None:
            self.held = False
            self._slots.release()


def _entry(attempt: int, error: DeliveryError | str, code: str | None = None) -> dict[str, Any]:
    text = error.message if isinstance(error, DeliveryError) else error
    return {
        "at": datetime.now(UTC).isoformat(),
        "attempt": attempt,
        "error": text,
        "code": error.code if isinstance(error, DeliveryError) else code,
        "http_status": error.http_status if isinstance(error, DeliveryError) else None,
    }


async def _dead_letter(
    ctx: DeliveryContext, raw: bytes, key: bytes, errors: list[dict[str, Any]], attempts: int, code: str
) -> None:
    try:
        original: Any = json.loads(raw)
    except ValueError:
        original = raw.decode(errors="replace")
    letter = {
        "record": original,
        "errors": errors,
        "attempts": attempts,
        "failure_code": code,
        "failed_at": datetime.now(UTC).isoformat(),
        "worker": ctx.store.worker_id,
    }
    # Retried until Kafka takes it: the FAILED status is only written once the dead letter exists.
    delay = 0.5
    while True:
        try:
            await ctx.dead_letters.publish([(ctx.dlq_topic, key, json.dumps(letter).encode())])
            break
        except NotifyError as exc:
            log.warning("dead-letter publish failed; retrying", extra={"error": exc.message})
            await ctx.sleep(delay)
            delay = min(delay * 2, 10.0)
    DEAD_LETTERED.labels(ctx.channel).inc()


async def _wait_for_turn(ctx: DeliveryContext, message_id: uuid.UUID) -> None:
    """Wait for the circuit breaker and the rate limit; keep the claim alive while waiting long."""
    waited = 0.0
    while True:
        delay = ctx.breaker.acquire()
        CIRCUIT_STATE.labels(ctx.channel).set(int(ctx.breaker.state))
        if delay == 0.0:
            break
        await ctx.sleep(delay)
        waited += delay
        if waited >= ctx.store.lease_s / 3:
            await ctx.store.renew(message_id)
            waited = 0.0
    if ctx.limiter is not None:
        wait = ctx.limiter.reserve()
        if wait > 0:
            await ctx.sleep(wait)


async def _call(ctx: DeliveryContext, message: OutgoingMessage) -> str:
    started = time.perf_counter()
    try:
        return await ctx.provider.send(message)
    finally:
        PROVIDER_SECONDS.labels(ctx.channel).observe(time.perf_counter() - started)


async def _settle_first(step: Awaitable[T]) -> T:
    """Await a database write; if cancelled meanwhile (shutdown, rebalance), let the write finish before the
    cancellation goes on: the statement may commit anyway, and giving the message back must come after it."""
    write = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await write
        raise


async def _claim_or_skip(ctx: DeliveryContext, message_id: uuid.UUID) -> dict[str, Any] | None:
    """The claimed row, or None when the message is final or gone. Waits out another worker's live claim."""
    while True:
        row = await _settle_first(ctx.store.claim(message_id))
        if row is not None:
            return row
        state = await ctx.store.state(message_id)
        if state is None or state["status"] not in (MessageStatus.PENDING, MessageStatus.PROCESSING):
            return None
        # Another worker holds it (it had the partition before a rebalance, or it crashed): look again
        # when its lease may have run out.
        remaining = (state["lease_until"] - datetime.now(UTC)).total_seconds() if state["lease_until"] else 0
        await ctx.sleep(min(max(remaining, 0.2), 5.0))


async def handle(raw: bytes, key: bytes, ctx: DeliveryContext) -> Outcome:
    """Deliver the message a Kafka record names; return how it ended."""
    try:
        record = NotificationRecord.from_bytes(raw)
    except (ValueError, TypeError, KeyError) as exc:
        await _dead_letter(
            ctx, raw, key, [_entry(0, f"unreadable record: {exc}", "unreadable_record")], 0, "unreadable_record"
        )
        DELIVERIES.labels(ctx.channel, "failed").inc()
        return Outcome.FAILED
    message_id = uuid.UUID(record.message_id)
    turn = ProviderTurn(ctx.provider_slots)
    try:
        await turn.take()  # waiting for a slot holds no claim: cancelling here leaves nothing behind
        return await _claim_and_deliver(ctx, raw, key, record, message_id, turn)
    finally:
        turn.done()


async def _claim_and_deliver(
    ctx: DeliveryContext, raw: bytes, key: bytes, record: NotificationRecord, message_id: uuid.UUID, turn: ProviderTurn
) -> Outcome:
    try:
        row = await _claim_or_skip(ctx, message_id)
    except asyncio.CancelledError:
        # Shutdown while claiming: a claim that committed as we were cancelled is given back (a no-op if not).
        await asyncio.shield(ctx.store.release([message_id]))
        raise
    if row is None:
        DELIVERIES.labels(ctx.channel, "skipped").inc()
        return Outcome.SKIPPED
    if row["old_status"] == MessageStatus.PROCESSING and row["old_attempts"] > 0:
        POSSIBLE_RESENDS.labels(ctx.channel).inc()
        log.warning(
            "taking over an expired claim; the message may be sent twice",
            extra={"message_id": record.message_id, "site_id": record.site_id},
        )
    message = OutgoingMessage.from_row(row)  # the row, never the record: see lib.domain.notification
    try:
        return await _deliver(ctx, raw, key, message, row["attempts"], turn)
    except asyncio.CancelledError:
        # Shutdown while waiting (backoff, breaker, rate limit): give the message back at once.
        await asyncio.shield(ctx.store.release([message_id]))
        raise


async def _deliver(
    ctx: DeliveryContext, raw: bytes, key: bytes, message: OutgoingMessage, attempts: int, turn: ProviderTurn
) -> Outcome:
    message_id = uuid.UUID(message.message_id)
    errors: list[dict[str, Any]] = []
    retries = 0
    while True:
        await turn.take()  # a retry takes a slot again (still cancellable: the claim is given back)
        await _wait_for_turn(ctx, message_id)
        # From the provider call until its outcome is written, shutdown must wait for this message, not
        # cancel it: cancelling here could put back a message the provider already has.
        ctx.on_call_state(True)
        try:
            outcome = await _attempt(ctx, raw, key, message, attempts, errors, retries, turn)
        finally:
            ctx.on_call_state(False)
        if isinstance(outcome, Outcome):
            return outcome
        retries += 1
        await ctx.sleep(outcome)
        if not await _settle_first(ctx.store.start_attempt(message_id)):
            return Outcome.SKIPPED  # our claim was taken over (we stalled past the lease)
        attempts += 1


async def _attempt(
    ctx: DeliveryContext,
    raw: bytes,
    key: bytes,
    message: OutgoingMessage,
    attempts: int,
    errors: list[dict[str, Any]],
    retries: int,
    turn: ProviderTurn,
) -> Outcome | float:
    """One provider call and the write of its outcome: an Outcome when done, else the delay before a retry."""
    message_id = uuid.UUID(message.message_id)
    log_extra = {"message_id": message.message_id, "site_id": message.site_id, "channel": ctx.channel}
    try:
        provider_id = await _call(ctx, message)
    except DeliveryError as exc:
        turn.done()
        entry = _entry(attempts, exc)
        errors.append(entry)
        if exc.code == "provider_rate_limited":
            ctx.breaker.hold(exc.retry_after_s or ctx.policy.base_delay_s)
        elif exc.temporary:
            ctx.breaker.record_failure()
        else:
            ctx.breaker.record_neutral()
        if exc.temporary and ctx.policy.should_retry(retries):
            await ctx.store.record_error(message_id, entry)
            RETRIES.labels(ctx.channel).inc()
            delay = ctx.policy.delay_s(retries + 1, exc.retry_after_s)
            log.info("provider call failed; retrying", extra={**log_extra, "error": exc.message, "delay_s": delay})
            return delay
        code = exc.code if not exc.temporary else "retries_exhausted"
        await _dead_letter(ctx, raw, key, errors, attempts, code)
        await ctx.store.mark_failed(message_id, code, exc.message, entry)
        DELIVERIES.labels(ctx.channel, "failed").inc()
        log.warning(
            "message failed", extra={**log_extra, "error": exc.message, "failure_code": code, "attempts": attempts}
        )
        return Outcome.FAILED
    turn.done()
    ctx.breaker.record_success()
    await _write_sent(ctx, message_id, provider_id)
    DELIVERIES.labels(ctx.channel, "sent").inc()
    log.info("message sent", extra={**log_extra, "provider_message_id": provider_id, "attempts": attempts})
    return Outcome.SENT


async def _write_sent(ctx: DeliveryContext, message_id: uuid.UUID, provider_id: str) -> None:
    """The provider has the message: keep trying to record that, since giving up means a re-send later."""
    delay = 0.2
    while True:
        try:
            await ctx.store.mark_sent(message_id, provider_id)
            return
        except NotifyError as exc:
            log.error("could not record SENT; retrying", extra={"message_id": str(message_id), "error": exc.message})
            await ctx.sleep(delay)
            delay = min(delay * 2, 5.0)
