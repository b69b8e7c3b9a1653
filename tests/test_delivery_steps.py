"""Steps of one delivery: a shutdown racing a claim, and the bound on provider calls in flight.

Shutdown racing a claim: the claim's statement commits even when the task awaiting it is cancelled, so the
message must be given back after it, or it stays PROCESSING until its lease runs out (the drain test's flake)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from lib.adapters import db
from lib.common.settings import DatabaseSettings, Secret
from lib.delivery.pipeline import DeliveryContext, ProviderTurn, handle
from lib.delivery.store import DeliveryStore
from lib.domain.notification import NotificationRecord, OutgoingMessage
from lib.domain.vocabulary import Channel
from tests.conftest import EMAIL, key_headers, register

pytestmark = pytest.mark.anyio


class SlowToAnswerStore(DeliveryStore):
    """The claim commits, then its answer is late: the moment a shutdown cancels the waiting task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claim_committed = asyncio.Event()

    async def claim(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        row = await super().claim(message_id)
        self.claim_committed.set()
        await asyncio.sleep(0.5)
        return row


def accepted_row(api_url: str, pg_dsn: str) -> dict[str, Any]:
    """A message the API accepted, as its row in message_logs."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        site = register(client)
        sent = client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site)).json()
    with psycopg.connect(pg_dsn, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("SELECT * FROM message_logs WHERE id = %s", (sent["message_id"],)).fetchone()
    assert row is not None
    return row


def claim_state(pg_dsn: str, message_id: uuid.UUID) -> tuple[str | None, str | None]:
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute(
            "SELECT status::text, claimed_by FROM message_logs WHERE id = %s", (message_id,)
        ).fetchone()
    return (found[0], found[1]) if found else (None, None)


@contextlib.asynccontextmanager
async def worker(
    pg_dsn: str, provider: Any = None, store_type: type[DeliveryStore] = DeliveryStore
) -> AsyncIterator[tuple[DeliveryContext, Any]]:
    """One delivery context on a pool of its own, as a worker holds it, and its store."""
    pool = db.create_pool(DatabaseSettings(url=Secret(pg_dsn)), name="delivery-steps")
    await pool.open()
    try:
        store = store_type(pool, "worker-under-test", lease_s=60)
        ctx = DeliveryContext(Channel.EMAIL, store, provider=provider, dead_letters=None, dlq_topic="unused")  # type: ignore[arg-type]
        yield ctx, store
    finally:
        await pool.close()


async def test_a_claim_cancelled_by_shutdown_is_given_back(api_url: str, pg_dsn: str) -> None:
    row = accepted_row(api_url, pg_dsn)
    record = NotificationRecord.from_row(row)
    async with worker(pg_dsn, store_type=SlowToAnswerStore) as (ctx, store):
        task = asyncio.create_task(handle(record.to_bytes(), record.key(), ctx))
        await asyncio.wait_for(store.claim_committed.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert claim_state(pg_dsn, row["id"]) == ("PENDING", None)


async def test_provider_turns_bound_calls_and_free_the_slot_when_the_provider_answers() -> None:
    slots = asyncio.Semaphore(2)
    first, second, third = ProviderTurn(slots), ProviderTurn(slots), ProviderTurn(slots)
    await first.take()
    await second.take()
    waiting = asyncio.create_task(third.take())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # two calls in flight: the third message waits (and claims nothing meanwhile)
    first.done()  # the provider answered the first: its status write no longer holds a slot
    await asyncio.wait_for(waiting, 1)
    first.done()  # giving back twice is harmless
    await third.take()  # taking again while holding is a no-op, not a second slot
    second.done()
    third.done()
    for _ in range(2):
        await asyncio.wait_for(slots.acquire(), 0.1)  # every slot is back...
    assert slots.locked()  # ...and none was given back twice


class RecordingProvider:
    name = "recording"

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []

    async def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        return "provider-id-1"

    async def aclose(self) -> None:
        return None


async def test_a_worker_delivers_the_row_and_reads_only_the_id_from_the_record(api_url: str, pg_dsn: str) -> None:
    """The rule written in lib.domain.notification: the record names a message; the row says what it is."""
    row = accepted_row(api_url, pg_dsn)
    stale = NotificationRecord.from_row({**row, "recipient": "someone@else.example", "body": "a stale copy"})
    provider = RecordingProvider()
    async with worker(pg_dsn, provider) as (ctx, _store):
        await asyncio.wait_for(handle(stale.to_bytes(), stale.key(), ctx), 20)
    assert [(m.message_id, m.content.recipient, m.content.body) for m in provider.sent] == [
        (str(row["id"]), row["recipient"], row["body"])
    ]


async def test_two_records_of_one_message_at_once_send_it_once(api_url: str, pg_dsn: str) -> None:
    """A re-published record (the stuck-PENDING sweeper, a client's retry after a 503) can reach a worker beside
    the first one: their claims share a statement, and the row must go to one of them only."""
    row = accepted_row(api_url, pg_dsn)
    record = NotificationRecord.from_row(row)
    provider = RecordingProvider()
    async with worker(pg_dsn, provider) as (ctx, _store):
        twins = [handle(record.to_bytes(), record.key(), ctx) for _ in range(2)]
        outcomes = await asyncio.wait_for(asyncio.gather(*twins), 20)
    assert sorted(o.value for o in outcomes) == ["sent", "skipped"]
    assert len(provider.sent) == 1


class HeldProvider(RecordingProvider):
    """Takes the message, then answers only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.called = asyncio.Event()
        self.answer = asyncio.Event()

    async def send(self, message: OutgoingMessage) -> str:
        self.sent.append(message)
        self.called.set()
        await self.answer.wait()
        return "provider-id-1"


async def test_a_twin_record_cancelled_while_claiming_leaves_the_delivery_in_flight_alone(
    api_url: str, pg_dsn: str
) -> None:
    """A rebalance cancels what is not inside a provider call. A second record of a message this worker is sending
    (the sweeper re-published it) may be cancelled while claiming: giving back by id alone released the message
    the first was sending, and the partition's next owner sent it again, uncounted (the fault suite's
    "Kafka stopped" found it)."""
    row = accepted_row(api_url, pg_dsn)
    record = NotificationRecord.from_row(row)
    provider = HeldProvider()
    async with worker(pg_dsn, provider, SlowToAnswerStore) as (ctx, store):
        first = asyncio.create_task(handle(record.to_bytes(), record.key(), ctx))
        await asyncio.wait_for(provider.called.wait(), 10)
        store.claim_committed = asyncio.Event()
        twin = asyncio.create_task(handle(record.to_bytes(), record.key(), ctx))
        await asyncio.wait_for(store.claim_committed.wait(), 10)  # its claim found the message taken
        twin.cancel()
        with pytest.raises(asyncio.CancelledError):
            await twin
        assert claim_state(pg_dsn, row["id"]) == ("PROCESSING", "worker-under-test")
        provider.answer.set()
        assert (await asyncio.wait_for(first, 10)).value == "sent"
    assert claim_state(pg_dsn, row["id"]) == ("SENT", None)
    assert len(provider.sent) == 1


async def test_a_delivery_cancelled_inside_its_provider_call_keeps_its_claim(api_url: str, pg_dsn: str) -> None:
    """The provider may have the message: it is not handed out again at once as if never sent, but left for the
    claim to run out, so that whoever takes it over counts the possible re-send."""
    row = accepted_row(api_url, pg_dsn)
    record = NotificationRecord.from_row(row)
    provider = HeldProvider()
    async with worker(pg_dsn, provider) as (ctx, _store):
        task = asyncio.create_task(handle(record.to_bytes(), record.key(), ctx))
        await asyncio.wait_for(provider.called.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert claim_state(pg_dsn, row["id"]) == ("PROCESSING", "worker-under-test")
