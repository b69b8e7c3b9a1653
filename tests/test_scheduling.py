"""Scheduled sends: stored SCHEDULED, published once when due (even with schedulers racing), cancellable before."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from functions.api.app import create_app
from lib.adapters import db
from lib.adapters.kafka import Publisher
from lib.common.settings import DatabaseSettings, KafkaSettings, Secret
from lib.services.scheduling import publish_due
from tests.conftest import EMAIL, WHATSAPP, ServerThread, api_settings_for, key_headers, register
from tests.test_accepting import read_records


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def row(pg_dsn: str, message_id: str) -> dict[str, Any]:
    with psycopg.connect(pg_dsn) as conn:
        found = conn.execute("SELECT status::text, send_at FROM message_logs WHERE id = %s", (message_id,)).fetchone()
    assert found is not None
    return {"status": found[0], "send_at": found[1]}


@pytest.fixture  # per test: no scheduler of this module's API runs beside the racing ones below
def scheduled_api(pg_dsn: str, kafka_settings: KafkaSettings) -> Any:
    settings = api_settings_for(
        pg_dsn, kafka_settings, API_SCHEDULER_INTERVAL_SECONDS="0.2", API_SCHEDULE_HORIZON_DAYS="2"
    )
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_a_scheduled_message_waits_then_is_published_once(
    scheduled_api: httpx.Client, pg_dsn: str, kafka_settings: KafkaSettings
) -> None:
    site = register(scheduled_api)
    response = scheduled_api.post(
        "/api/v1/notifications/send", json={**EMAIL, "send_at": at(3)}, headers=key_headers(site)
    )
    assert response.status_code == 202 and response.json()["status"] == "SCHEDULED", response.text
    message_id = response.json()["message_id"]
    assert row(pg_dsn, message_id)["status"] == "SCHEDULED"
    assert read_records(kafka_settings, "email", {message_id}, timeout_s=1.5) == {}  # not before its time
    shown = scheduled_api.get(f"/api/v1/notifications/{message_id}", headers=key_headers(site)).json()
    assert shown["status"] == "SCHEDULED" and shown["send_at"] is not None
    record = read_records(kafka_settings, "email", {message_id}, timeout_s=15)
    assert record[message_id]["value"]["recipient"] == EMAIL["recipient"]
    assert row(pg_dsn, message_id)["status"] == "PENDING"
    assert datetime.now(UTC) >= datetime.fromisoformat(shown["send_at"])


def test_send_at_in_the_past_sends_at_once_and_bad_ones_are_refused(
    scheduled_api: httpx.Client, pg_dsn: str, kafka_settings: KafkaSettings
) -> None:
    site = register(scheduled_api)
    now = scheduled_api.post(
        "/api/v1/notifications/send", json={**WHATSAPP, "send_at": at(-60)}, headers=key_headers(site)
    )
    assert now.status_code == 202 and now.json()["status"] == "PENDING"
    assert read_records(kafka_settings, "whatsapp", {now.json()["message_id"]}, timeout_s=10)
    for bad, code in [
        (at(3 * 86400), "too_far"),  # the horizon is 2 days here
        ("2026-12-08T09:00:00", "invalid"),  # no time zone
        ("tomorrow 9am", "invalid"),
        (1765184400, "invalid"),
        ("0001-01-01T00:00:00+01:00", "invalid"),
    ]:
        refused = scheduled_api.post(
            "/api/v1/notifications/send", json={**EMAIL, "send_at": bad}, headers=key_headers(site)
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert [(d["field"], d["code"]) for d in refused.json()["error"]["details"]] == [("send_at", code)]


def test_bulk_items_may_be_scheduled(scheduled_api: httpx.Client, pg_dsn: str) -> None:
    site = register(scheduled_api)
    items = [{**EMAIL, "send_at": at(3600)}, EMAIL, {**EMAIL, "send_at": at(9 * 86400)}]
    results = scheduled_api.post("/api/v1/notifications/bulk", json={"items": items}, headers=key_headers(site)).json()[
        "results"
    ]
    assert [r["status"] for r in results] == ["accepted", "accepted", "rejected"]
    assert results[0].get("scheduled") is True and "scheduled" not in results[1]
    assert results[2]["error"]["details"][0]["code"] == "too_far"
    assert row(pg_dsn, results[0]["message_id"])["status"] == "SCHEDULED"
    assert row(pg_dsn, results[1]["message_id"])["status"] == "PENDING"


def test_the_same_idempotency_key_and_send_at_is_one_message(scheduled_api: httpx.Client) -> None:
    site = register(scheduled_api)
    headers = {**key_headers(site), "Idempotency-Key": "reminder-7"}
    when = at(3600)
    first = scheduled_api.post("/api/v1/notifications/send", json={**EMAIL, "send_at": when}, headers=headers)
    again = scheduled_api.post("/api/v1/notifications/send", json={**EMAIL, "send_at": when}, headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() == {"message_id": first.json()["message_id"], "status": "SCHEDULED"}
    moved = scheduled_api.post("/api/v1/notifications/send", json={**EMAIL, "send_at": at(7200)}, headers=headers)
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "idempotency_key_conflict"


def test_cancel_before_the_time_and_it_is_never_published(
    scheduled_api: httpx.Client, pg_dsn: str, kafka_settings: KafkaSettings
) -> None:
    site, other = register(scheduled_api), register(scheduled_api)
    message_id = scheduled_api.post(
        "/api/v1/notifications/send", json={**EMAIL, "send_at": at(4)}, headers=key_headers(site)
    ).json()["message_id"]
    url = f"/api/v1/notifications/{message_id}/cancel"
    assert scheduled_api.post(url, headers=key_headers(other)).status_code == 404  # another site's
    cancelled = scheduled_api.post(url, headers=key_headers(site))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    again = scheduled_api.post(url, headers=key_headers(site))
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_cancellable"
    assert again.json()["error"]["details"][0]["code"] == "CANCELLED"
    time.sleep(5)  # past its send_at, with the scheduler running every 0.2 s
    assert row(pg_dsn, message_id)["status"] == "CANCELLED"
    assert read_records(kafka_settings, "email", {message_id}, timeout_s=1) == {}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # a sent message cannot be cancelled
        conn.execute("UPDATE message_logs SET status = 'SENT' WHERE id = %s", (message_id,))
    sent = scheduled_api.post(url, headers=key_headers(site))
    assert sent.status_code == 409 and sent.json()["error"]["details"][0]["code"] == "SENT"
    daily = scheduled_api.get("/api/v1/metrics", headers=key_headers(site)).json()["items"]
    assert [(d["total"], d["scheduled"], d["cancelled"], d["sent"]) for d in daily] == [(1, 0, 0, 1)]


def test_daily_metrics_count_scheduled_and_cancelled(scheduled_api: httpx.Client) -> None:
    site = register(scheduled_api)
    ids = [
        scheduled_api.post(
            "/api/v1/notifications/send", json={**EMAIL, "send_at": at(3600)}, headers=key_headers(site)
        ).json()["message_id"]
        for _ in range(3)
    ]
    assert scheduled_api.post(f"/api/v1/notifications/{ids[0]}/cancel", headers=key_headers(site)).status_code == 200
    [daily] = scheduled_api.get("/api/v1/metrics", headers=key_headers(site)).json()["items"]
    assert (daily["total"], daily["scheduled"], daily["cancelled"], daily["pending"]) == (3, 2, 1, 0)
    listed = scheduled_api.get(
        "/api/v1/notifications", params={"status": "SCHEDULED"}, headers=key_headers(site)
    ).json()["items"]
    assert sorted(m["message_id"] for m in listed) == sorted(ids[1:])


def _count_records(kafka: KafkaSettings, channel: str, wanted: set[str], settle_s: float = 3.0) -> Counter[str]:
    """How many records each wanted id has in the topic (read until nothing new came for ``settle_s``)."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"count-{uuid.uuid4().hex}", "enable.auto.commit": False})
    topic = kafka.topic(channel)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    seen: Counter[str] = Counter()
    quiet_since = time.monotonic()
    try:
        while time.monotonic() - quiet_since < settle_s:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            key = (msg.key() or b"").decode()
            if key in wanted:
                seen[key] += 1
                quiet_since = time.monotonic()
    finally:
        consumer.close()
    return seen


@pytest.mark.anyio
async def test_two_schedulers_racing_publish_each_message_once(pg_dsn: str, kafka_settings: KafkaSettings) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        site_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO frappe_sites (id, site_name, key_lookup_id, key_hash) VALUES (%s, %s, %s, 'x')",
            (site_id, f"race-{site_id.hex[:10]}", site_id.hex[:16]),
        )
        ids = [uuid.uuid4() for _ in range(600)]
        conn.execute(
            "INSERT INTO message_logs (id, site_id, channel, recipient, subject, body, status, send_at) "
            "SELECT i, %s, 'whatsapp', '+14155550123', NULL, 'due', 'SCHEDULED', now() - interval '1 second' "
            "FROM unnest(%s::uuid[]) AS i",
            (site_id, ids),
        )
    settings = DatabaseSettings(url=Secret(pg_dsn), pool_min=1, pool_max=4)

    async def scheduler() -> int:
        pool = db.create_pool(settings, name="race")
        await pool.open()
        publisher = Publisher(kafka_settings)
        taken = 0
        try:
            while (n := await publish_due(pool, publisher, kafka_settings, limit=25)) > 0:
                taken += n
        finally:
            await asyncio.to_thread(publisher.close)
            await pool.close()
        return taken

    taken = await asyncio.gather(*(scheduler() for _ in range(3)))
    assert sum(taken) == len(ids) and sum(1 for t in taken if t) >= 2, taken  # each taken once; they raced
    counts = _count_records(kafka_settings, "whatsapp", {str(i) for i in ids})
    assert len(counts) == len(ids) and set(counts.values()) == {1}
    with psycopg.connect(pg_dsn) as conn:
        left = conn.execute("SELECT count(*) FROM message_logs WHERE id = ANY(%s) AND status = 'SCHEDULED'", (ids,))
        assert left.fetchone() == (0,)
