"""One delivery through the pipeline, over an in-memory store and provider: no PostgreSQL, no Kafka."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from lib.adapters.providers import DeliveryError, error_for_transport
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, RetryPolicy
from lib.delivery.metrics import POSSIBLE_RESENDS
from lib.delivery.pipeline import DeliveryContext, Outcome, handle
from lib.domain.notification import NotificationRecord, OutgoingMessage
from lib.domain.vocabulary import Channel, MessageStatus

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class MemoryStore:
    """The pipeline's Store over a dict of rows, claiming as the SQL does (PENDING or an expired claim)."""

    worker_id = "unit"
    lease_s = 60.0

    def __init__(self, row: dict[str, Any]) -> None:
        self.rows = {row["id"]: row}
        self.errors: list[dict[str, Any]] = []

    async def attachment_files(self, message_id: uuid.UUID) -> list[dict[str, Any]]:
        return []

    async def claim(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        row = self.rows.get(message_id)
        if row is None or row["status"] != MessageStatus.PENDING:
            return None
        claimed = {**row, "old_status": row["status"], "old_attempts": row["attempts"], "attempts": row["attempts"] + 1}
        row.update(status=MessageStatus.PROCESSING, attempts=claimed["attempts"])
        return claimed

    async def state(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        return self.rows.get(message_id)

    async def start_attempt(self, message_id: uuid.UUID) -> bool:
        self.rows[message_id]["attempts"] += 1
        return True

    async def renew(self, message_id: uuid.UUID) -> bool:
        return True

    async def record_error(self, message_id: uuid.UUID, entry: dict[str, Any]) -> None:
        self.errors.append(entry)

    async def mark_failed(self, message_id: uuid.UUID, code: str, error: str, entry: dict[str, Any]) -> bool:
        self.rows[message_id].update(status=MessageStatus.FAILED, failure_code=code)
        return True

    async def mark_unknown_failed(self, message_id: uuid.UUID, code: str, error: str) -> None:
        return None

    async def release(self, message_ids: list[uuid.UUID]) -> None:
        return None

    async def mark_sent(self, message_id: uuid.UUID, provider_message_id: str) -> bool:
        self.rows[message_id].update(status=MessageStatus.SENT, provider_message_id=provider_message_id)
        return True


class ScriptedProvider:
    name = "scripted"

    def __init__(self, answers: list[str | DeliveryError]) -> None:
        self.answers = answers
        self.calls: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> str:
        self.calls.append(message)
        answer = self.answers.pop(0)
        if isinstance(answer, DeliveryError):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[str, bytes, bytes]] = []

    async def publish(self, records: list[tuple[str, bytes, bytes]]) -> None:
        self.letters.extend(records)


def row() -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "site_id": uuid.uuid4(),
        "recipient": "ada@example.com",
        "body": "Hi",
        "subject": "Hello",
        "html": None,
        "metadata": {},
        "status": MessageStatus.PENDING,
        "attempts": 0,
    }


async def run(store: MemoryStore, provider: ScriptedProvider, letters: DeadLetters) -> Outcome:
    message = next(iter(store.rows.values()))
    record = NotificationRecord.from_row({**message, "channel": "email"})
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    ctx = DeliveryContext(
        Channel.EMAIL,
        store,
        provider,
        letters,  # type: ignore[arg-type]
        "dlq",
        policy=RetryPolicy(max_retries=2, base_delay_s=1.0, jitter=0.0),
        sleep=sleep,
    )
    return await handle(record.to_bytes(), record.key(), ctx)


async def test_a_temporary_failure_is_retried_then_sent() -> None:
    store = MemoryStore(row())
    provider = ScriptedProvider([DeliveryError("503", code="provider_unavailable", temporary=True), "pid-1"])
    assert await run(store, provider, DeadLetters()) is Outcome.SENT
    final = next(iter(store.rows.values()))
    assert (final["status"], final["provider_message_id"], final["attempts"]) == (MessageStatus.SENT, "pid-1", 2)
    assert [e["code"] for e in store.errors] == ["provider_unavailable"] and len(provider.calls) == 2


def possible_resends() -> float:
    return float(POSSIBLE_RESENDS.labels(Channel.EMAIL)._value.get())


async def test_a_retry_after_a_call_that_got_no_answer_is_counted_as_a_possible_resend() -> None:
    before = possible_resends()
    unanswered = error_for_transport("p", httpx.ReadTimeout("no answer"))
    refused = error_for_transport("p", httpx.ConnectError("refused"))
    store = MemoryStore(row())
    assert await run(store, ScriptedProvider([refused, unanswered, "pid-1"]), DeadLetters()) is Outcome.SENT
    assert possible_resends() == before + 1  # the refused connection cannot have reached the provider


async def test_a_permanent_failure_is_dead_lettered_then_failed() -> None:
    store, letters = MemoryStore(row()), DeadLetters()
    provider = ScriptedProvider([DeliveryError("422", code="invalid_recipient", temporary=False)])
    assert await run(store, provider, letters) is Outcome.FAILED
    assert next(iter(store.rows.values()))["failure_code"] == "invalid_recipient"
    assert [topic for topic, _, _ in letters.letters] == ["dlq"]


async def test_a_message_already_final_is_skipped_without_a_call() -> None:
    done = {**row(), "status": MessageStatus.SENT}
    provider = ScriptedProvider([])
    assert await run(MemoryStore(done), provider, DeadLetters()) is Outcome.SKIPPED
    assert provider.calls == []


async def test_a_probe_given_up_while_waiting_for_the_rate_limit_is_handed_back() -> None:
    """Found on the node (tests/node): a half-open circuit's one probe, cancelled while it waited for the rate
    limit (its partition revoked by a scale-down), held the circuit shut for every other message of the worker."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10  # half-open: the next caller is the probe
    limiter = TokenBucket(1.0, burst=1, clock=clock)
    limiter.reserve()  # the bucket is empty: the probe will wait for its turn
    store, provider = MemoryStore(row()), ScriptedProvider(["never called"])
    message = next(iter(store.rows.values()))
    record = NotificationRecord.from_row({**message, "channel": "email"})
    waiting = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.Event().wait()  # until cancelled

    ctx = DeliveryContext(
        Channel.EMAIL, store, provider, DeadLetters(), "dlq",  # type: ignore[arg-type]
        policy=RetryPolicy(max_retries=2, base_delay_s=1.0, jitter=0.0), sleep=sleep, breaker=breaker, limiter=limiter,
    )  # fmt: skip
    task = asyncio.create_task(handle(record.to_bytes(), record.key(), ctx))
    await waiting.wait()
    assert breaker.probe_out  # the waiting message holds the probe
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not breaker.probe_out and breaker.acquire() == 0.0  # the next message probes
    assert provider.calls == []
