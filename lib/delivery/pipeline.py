"""Delivering one message: claim it in PostgreSQL, call the provider, retry or dead-letter, record the outcome.

``handle`` is the whole story of one Kafka record and knows nothing of offsets or partitions: the consume
loop (``lib.delivery.worker``) owns those. State moves PENDING -> PROCESSING -> SENT | FAILED, guarded by a claim
(``claimed_by`` + ``lease_until``), so a record delivered twice (rebalance, restart, replay, re-publish) is
sent once. Two windows are left, both counted in ``notify_worker_possible_resends_total``: a crash after the
provider accepted a message and before SENT was written (the next owner takes over the expired claim and sends
again), and a retry after a call that went out and got no answer (a timeout: the provider may have it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from lib.adapters.kafka import Publisher
from lib.adapters.providers import DeliveryError, Provider
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, CircuitState, RetryPolicy
from lib.delivery.accounts import Account, Accounts
from lib.delivery.decisions import ProviderHealth, decide
from lib.delivery.metrics import (
    CIRCUIT_STATE,
    DEAD_LETTERED,
    DELIVERIES,
    POSSIBLE_RESENDS,
    PROVIDER_SECONDS,
    RETRIES,
    SITE_ACCOUNT_AUTH_FAILED,
)
from lib.delivery.store import Store
from lib.domain.errors import NotifyError
from lib.domain.notification import NotificationRecord, OutgoingFile, OutgoingMessage
from lib.domain.vocabulary import Channel, MessageStatus

T = TypeVar("T")
log = logging.getLogger(__name__)


class Outcome(Enum):
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # already final, or another worker holds it now
    RELEASED = "released"  # given back on shutdown: not finished, offset not committed


@dataclass
class DeliveryContext:
    """What every delivery of one worker shares. ``provider``, ``breaker`` and ``limiter`` are the channel's
    global account; ``accounts`` finds a site's own (None: every site sends through the global one)."""

    channel: Channel
    store: Store
    provider: Provider
    dead_letters: Publisher
    dlq_topic: str
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    limiter: TokenBucket | None = None
    accounts: Accounts | None = None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # Set by the loop: True while this message is inside a provider call (so shutdown waits for it).
    on_call_state: Callable[[bool], None] = lambda _in_call: None
    # At most this many provider calls at once (the worker's concurrency); None: no bound of its own.
    provider_slots: asyncio.Semaphore | None = None

    def __post_init__(self) -> None:
        self.global_account = Account(self.provider, self.breaker, self.limiter)

    async def account_for(self, site_id: str) -> Account:
        own = await self.accounts.for_site(site_id) if self.accounts is not None else None
        return own or self.global_account


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


async def _wait_for_turn(ctx: DeliveryContext, account: Account, message_id: uuid.UUID) -> None:
    """Wait for the account's circuit breaker and rate limit; keep the claim alive while waiting long."""
    breaker = account.breaker
    waited = 0.0
    while True:
        delay = breaker.acquire()
        if not account.own:  # the gauge shows the channel's global account
            CIRCUIT_STATE.labels(ctx.channel).set(int(breaker.state))
        if delay == 0.0:
            break
        await ctx.sleep(delay)
        waited += delay
        if waited >= ctx.store.lease_s / 3:
            await ctx.store.renew(message_id)
            waited = 0.0
    # Past the breaker we may hold its one probe (half-open): given up while waiting for the rate limit (the
    # message revoked, the worker stopping), it is handed back, or the circuit would stay shut for everyone else.
    probing = breaker.state is CircuitState.HALF_OPEN
    if account.limiter is not None:
        wait = account.limiter.reserve()
        if wait > 0:
            try:
                await ctx.sleep(wait)
            except asyncio.CancelledError:
                if probing:
                    breaker.abandon_probe()
                raise


async def _call(ctx: DeliveryContext, account: Account, message: OutgoingMessage) -> str:
    if any(f.content is None for f in message.files):
        raise DeliveryError(
            "an attachment of this message was purged after its retention", code="attachment_expired", temporary=False
        )
    started = time.perf_counter()
    try:
        return await account.provider.send(message)
    finally:
        PROVIDER_SECONDS.labels(ctx.channel).observe(time.perf_counter() - started)


async def _settle_first(step: Awaitable[T], undo: Callable[[T], Awaitable[None]] | None = None) -> T:
    """Await a database write; if cancelled meanwhile (shutdown, rebalance), let the write finish before the
    cancellation goes on: the statement may commit anyway, and giving the message back must come after it.
    ``undo``, given the write's result, then takes back what it did."""
    write = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            done = await write
            if undo is not None:
                await asyncio.shield(undo(done))
        raise


async def _claim(ctx: DeliveryContext, message_id: uuid.UUID) -> dict[str, Any] | None:
    """Claim the message. Cancelled meanwhile, a claim the statement took anyway is given back, and only that one:
    the same worker may be delivering the message under another record of it, and releasing by id alone would
    hand that delivery's message out again."""

    async def give_back(row: dict[str, Any] | None) -> None:
        if row is not None:
            await ctx.store.release([message_id])

    return await _settle_first(ctx.store.claim(message_id), undo=give_back)


async def _claim_or_skip(ctx: DeliveryContext, message_id: uuid.UUID) -> dict[str, Any] | None:
    """The claimed row, or None when the message is final or gone. Waits out another worker's live claim."""
    while True:
        row = await _claim(ctx, message_id)
        if row is not None:
            return row
        state = await ctx.store.state(message_id)
        if state is None or state["status"] not in (MessageStatus.PENDING, MessageStatus.PROCESSING):
            return None
        if state["claimed_by"] == ctx.store.worker_id and state["leased"]:
            return None  # another record of this message, which this worker is delivering already
        # Another worker holds it (it had the partition before a rebalance, or it crashed): look again
        # when its lease may have run out.
        remaining = (state["lease_until"] - datetime.now(UTC)).total_seconds() if state["lease_until"] else 0
        await ctx.sleep(min(max(remaining, 0.2), 5.0))


@dataclass
class Delivery:
    """One message on its way through the steps: the record it came in, the row's content, and its attempts."""

    ctx: DeliveryContext
    raw: bytes  # the Kafka record as it came (a dead letter carries it)
    key: bytes
    message_id: uuid.UUID
    turn: ProviderTurn
    message: OutgoingMessage | None = None  # from the claimed row
    account: Account | None = None  # the provider account it goes out through (its site's, or the global one)
    attempts: int = 0
    retries: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    in_call: bool = False  # from the provider call until its outcome is written

    @property
    def log_extra(self) -> dict[str, Any]:
        site_id = self.message.site_id if self.message else None
        return {"message_id": str(self.message_id), "site_id": site_id, "channel": self.ctx.channel}


async def handle(raw: bytes, key: bytes, ctx: DeliveryContext) -> Outcome:
    """Deliver the message a Kafka record names; return how it ended."""
    try:
        record = NotificationRecord.from_bytes(raw)
    except ValueError as exc:
        await _dead_letter(
            ctx, raw, key, [_entry(0, f"unreadable record: {exc}", "unreadable_record")], 0, "unreadable_record"
        )
        DELIVERIES.labels(ctx.channel, "failed").inc()
        return Outcome.FAILED
    delivery = Delivery(ctx, raw, key, uuid.UUID(record.message_id), ProviderTurn(ctx.provider_slots))
    try:
        await delivery.turn.take()  # waiting for a slot holds no claim: cancelling here leaves nothing behind
        return await _claim_and_deliver(delivery)
    finally:
        delivery.turn.done()


async def _claim_and_deliver(delivery: Delivery) -> Outcome:
    ctx = delivery.ctx
    row = await _claim_or_skip(ctx, delivery.message_id)
    if row is None:
        DELIVERIES.labels(ctx.channel, "skipped").inc()
        return Outcome.SKIPPED
    delivery.message = OutgoingMessage.from_row(row)  # the row, never the record: see lib.domain.notification
    if row.get("attachment_count"):
        files = await ctx.store.attachment_files(delivery.message_id)
        delivery.message = replace(delivery.message, files=tuple(OutgoingFile(**f) for f in files))
    delivery.account = await ctx.account_for(delivery.message.site_id)
    delivery.attempts = row["attempts"]
    if row["old_status"] == MessageStatus.PROCESSING and row["old_attempts"] > 0:
        POSSIBLE_RESENDS.labels(ctx.channel).inc()
        log.warning("taking over an expired claim; the message may be sent twice", extra=delivery.log_extra)
    try:
        return await _deliver(delivery)
    except asyncio.CancelledError:
        # Shutdown while waiting (backoff, breaker, rate limit): give the message back at once. Cancelled inside
        # a provider call (past the grace period, or a lost partition), it is kept: the provider may have it,
        # and the owner that takes over the expired claim counts the possible re-send.
        if not delivery.in_call:
            await asyncio.shield(ctx.store.release([delivery.message_id]))
        raise


async def _deliver(delivery: Delivery) -> Outcome:
    ctx = delivery.ctx
    while True:
        await delivery.turn.take()  # a retry takes a slot again (still cancellable: the claim is given back)
        assert delivery.account is not None
        await _wait_for_turn(ctx, delivery.account, delivery.message_id)
        # From the provider call until its outcome is written, shutdown must wait for this message, not
        # cancel it: cancelling here could put back a message the provider already has.
        ctx.on_call_state(True)
        delivery.in_call = True  # left set when the call is cancelled: see _claim_and_deliver
        try:
            outcome = await _attempt(delivery)
        finally:
            ctx.on_call_state(False)
        delivery.in_call = False
        if isinstance(outcome, Outcome):
            return outcome
        delivery.retries += 1
        await ctx.sleep(outcome)
        if not await _settle_first(ctx.store.start_attempt(delivery.message_id)):
            return Outcome.SKIPPED  # our claim was taken over (we stalled past the lease)
        delivery.attempts += 1


async def _attempt(delivery: Delivery) -> Outcome | float:
    """One provider call and the write of its outcome: an Outcome when done, else the delay before a retry."""
    ctx, message_id, account = delivery.ctx, delivery.message_id, delivery.account
    assert delivery.message is not None and account is not None
    breaker = account.breaker
    try:
        provider_id = await _call(ctx, account, delivery.message)
    except DeliveryError as exc:
        delivery.turn.done()
        entry = _entry(delivery.attempts, exc)
        delivery.errors.append(entry)
        decision = decide(exc, delivery.retries, ctx.policy, own_account=account.own)
        if decision.health is ProviderHealth.HOLD:
            breaker.hold(decision.hold_s)
        elif decision.health is ProviderHealth.FAILURE:
            breaker.record_failure()
        else:
            breaker.record_neutral()
        if decision.retry:
            await ctx.store.record_error(message_id, entry)
            RETRIES.labels(ctx.channel).inc()
            if exc.unanswered:
                POSSIBLE_RESENDS.labels(ctx.channel).inc()
            extra = {**delivery.log_extra, "error": exc.message, "delay_s": decision.delay_s}
            log.info("provider call failed; retrying", extra=extra)
            return decision.delay_s
        code = decision.failure_code or "retries_exhausted"
        if code == "provider_auth_failed" and account.own:
            SITE_ACCOUNT_AUTH_FAILED.labels(ctx.channel, delivery.message.site_id).inc()
        await _dead_letter(ctx, delivery.raw, delivery.key, delivery.errors, delivery.attempts, code)
        await ctx.store.mark_failed(message_id, code, exc.message, entry)
        DELIVERIES.labels(ctx.channel, "failed").inc()
        extra = {**delivery.log_extra, "error": exc.message, "failure_code": code, "attempts": delivery.attempts}
        log.warning("message failed", extra=extra)
        return Outcome.FAILED
    delivery.turn.done()
    breaker.record_success()
    await _write_sent(ctx, message_id, provider_id)
    DELIVERIES.labels(ctx.channel, "sent").inc()
    extra = {**delivery.log_extra, "provider_message_id": provider_id, "attempts": delivery.attempts}
    log.info("message sent", extra=extra)
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
