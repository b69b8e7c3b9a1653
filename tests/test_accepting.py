"""What a 202 promises: the row is in PostgreSQL and the record is in Kafka, with the expected key and payload."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from functions.api.app import create_app
from lib.common.settings import KafkaSettings
from tests.conftest import EMAIL, WHATSAPP, ServerThread, api_settings_for, key_headers, register


def read_records(kafka: KafkaSettings, channel: str, wanted: set[str], timeout_s: float = 20) -> dict[str, Any]:
    """Read the channel topic from the start until every wanted message id was seen."""
    consumer = Consumer({**kafka.client_config(), "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False})
    topic = kafka.topic(channel)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])  # offset 0: from the beginning
    found: dict[str, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while not wanted <= set(found) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key = (msg.key() or b"").decode()
            if key in wanted:
                found[key] = {"key": key, "value": json.loads(msg.value() or b"{}"), "topic": msg.topic()}
    finally:
        consumer.close()
    return found


def test_accepted_messages_are_in_the_topic(
    client: httpx.Client, site: dict[str, Any], kafka_settings: KafkaSettings
) -> None:
    email_id = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "metadata": {"doc": "SINV-1"}}, headers=key_headers(site)
    ).json()["message_id"]
    bulk = client.post(
        "/api/v1/notifications/bulk", json={"items": [WHATSAPP, WHATSAPP]}, headers=key_headers(site)
    ).json()
    bulk_ids = {r["message_id"] for r in bulk["results"]}
    email = read_records(kafka_settings, "email", {email_id})[email_id]
    assert email["value"]["message_id"] == email_id and email["value"]["site_id"] == site["site_id"]
    assert (email["value"]["recipient"], email["value"]["subject"], email["value"]["body"]) == (
        EMAIL["recipient"],
        EMAIL["subject"],
        EMAIL["body"],
    )
    assert email["value"]["metadata"] == {"doc": "SINV-1"} and email["value"]["v"] == 1
    whatsapp = read_records(kafka_settings, "whatsapp", bulk_ids)
    assert set(whatsapp) == bulk_ids
    assert all(r["value"]["channel"] == "whatsapp" for r in whatsapp.values())


@pytest.mark.anyio
async def test_same_idempotency_key_racing_creates_one_message(api_url: str, pg_dsn: str) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        site = (
            await http.post(
                "/api/v1/site/register",
                json={"site_name": f"race-{uuid.uuid4().hex[:8]}.example.com"},
                headers={"Authorization": "Bearer test-admin-token"},
            )
        ).json()
        headers = {**key_headers(site), "Idempotency-Key": "invoice-42"}
        responses = await asyncio.gather(
            *(http.post("/api/v1/notifications/send", json=EMAIL, headers=headers) for _ in range(20))
        )
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["message_id"] for r in responses}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
        conflict = await http.post("/api/v1/notifications/send", json={**EMAIL, "body": "other"}, headers=headers)
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_key_conflict"
        bulk = await http.post(
            "/api/v1/notifications/bulk",
            headers=key_headers(site),
            json={"items": [{**EMAIL, "idempotency_key": "b-1"}, {**EMAIL, "idempotency_key": "b-1"}]},
        )
        assert [r["status"] for r in bulk.json()["results"]] == ["accepted", "rejected"]
        again = await http.post(
            "/api/v1/notifications/bulk",
            headers=key_headers(site),
            json={"items": [{**EMAIL, "idempotency_key": "b-1"}]},
        )
        assert again.json()["results"][0]["message_id"] == bulk.json()["results"][0]["message_id"]
    with psycopg.connect(pg_dsn) as conn:
        count = conn.execute("SELECT count(*) FROM message_logs WHERE site_id = %s", (site["site_id"],)).fetchone()
    assert count == (2,)


def test_kafka_down_gives_503_and_no_stuck_pending(pg_dsn: str, kafka_settings: KafkaSettings) -> None:
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:1", topic_prefix=kafka_settings.topic_prefix)
    settings = api_settings_for(pg_dsn, dead, KAFKA_DELIVERY_TIMEOUT_MS="1500")
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        site = register(http)
        headers = {**key_headers(site), "Idempotency-Key": "retry-me"}
        refused = http.post("/api/v1/notifications/send", json=EMAIL, headers=headers)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "kafka_unavailable"
        assert http.get("/readyz").status_code == 503
        listed = http.get("/api/v1/notifications", headers=key_headers(site)).json()["items"]
        assert [(m["status"], m["failure_code"]) for m in listed] == [("FAILED", "enqueue_failed")]
    # The same key, once Kafka is back, enqueues that same message again.
    with (
        ServerThread(create_app(api_settings_for(pg_dsn, kafka_settings))) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        retried = http.post("/api/v1/notifications/send", json=EMAIL, headers=headers)
        assert retried.status_code == 202 and retried.json()["message_id"] == listed[0]["message_id"]
        assert (
            http.get(f"/api/v1/notifications/{listed[0]['message_id']}", headers=key_headers(site)).json()["status"]
            == "PENDING"
        )
        assert read_records(kafka_settings, "email", {listed[0]["message_id"]})


def test_stuck_pending_rows_are_published_again(pg_dsn: str, kafka_settings: KafkaSettings) -> None:
    settings = api_settings_for(pg_dsn, kafka_settings, STUCK_PENDING_AFTER_SECONDS="2")
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        site = register(http)
        message_id = str(uuid.uuid4())
        with psycopg.connect(pg_dsn) as conn:  # what a crash between insert and publish leaves behind
            conn.execute(
                "INSERT INTO message_logs (id, site_id, channel, recipient, subject, body, updated_at) "
                "VALUES (%s, %s, 'email', 'x@example.com', 's', 'b', now() - interval '1 minute')",
                (message_id, site["site_id"]),
            )
        record = read_records(kafka_settings, "email", {message_id}, timeout_s=15)
        assert record[message_id]["value"]["recipient"] == "x@example.com"
