"""Issue 14: nothing one site sends, or gets wrong, reaches another site. Each test reproduces an attack that
worked before its fix, over the real PostgreSQL, Kafka and a real API server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from starlette.requests import Request

from functions.api.app import create_app
from lib.adapters import db
from lib.adapters.http import read_json
from lib.adapters.kafka import Publisher, drop_topics, sized_for_topics
from lib.common.settings import DatabaseSettings, KafkaSettings, Secret
from lib.domain.errors import NotifyError
from lib.domain.validation import parse_notification
from lib.services import sites
from lib.services.accepting import Accepted, Acceptor
from lib.services.identity import SiteIdentity
from tests.conftest import ADMIN_HEADERS, EMAIL, ServerThread, api_settings_for, key_headers, register

SMALL_TOPIC_BYTES = 20_000


@pytest.fixture(scope="module")
def small_topics(kafka_settings: KafkaSettings) -> Iterator[KafkaSettings]:
    """Channel topics whose brokers take records of at most 20 kB: a record the producer lets through and the
    broker refuses."""
    kafka = KafkaSettings(bootstrap_servers=kafka_settings.bootstrap_servers, topic_prefix=f"s{uuid.uuid4().hex[:8]}")
    admin = AdminClient(kafka.client_config())
    wanted = [kafka.topic(c) for c in ("email", "whatsapp")] + [kafka.dlq_topic(c) for c in ("email", "whatsapp")]
    config = {"max.message.bytes": str(SMALL_TOPIC_BYTES)}
    for future in admin.create_topics([NewTopic(t, 1, 1, config=config) for t in wanted]).values():
        future.result(timeout=30)
    yield kafka
    drop_topics(kafka)


def identity(site: dict[str, Any]) -> SiteIdentity:
    return SiteIdentity(uuid.UUID(site["site_id"]), site["site_name"], "active", ("email", "whatsapp"), None)


def statuses(pg_dsn: str, site: dict[str, Any]) -> list[tuple[str, str | None]]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT status::text, failure_code FROM message_logs WHERE site_id = %s", (site["site_id"],)
        ).fetchall()
    return sorted(rows, key=str)


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[Any]:
    async with db.create_pool(DatabaseSettings(url=Secret(pg_dsn)), name="test-isolation") as opened:
        yield opened


@pytest.mark.anyio
async def test_a_record_the_broker_refuses_fails_alone_in_its_batch(
    pool: Any, pg_dsn: str, small_topics: KafkaSettings
) -> None:
    """Before: one record's error failed the whole group-commit batch, and every site's request in it got a 503
    carrying the other site's Kafka error. Many small records still share the producer's batches, sized under the
    topics' limit."""
    a = await sites.register_site(pool, f"a-{uuid.uuid4().hex[:8]}.example.com", None, rounds=4)
    b = await sites.register_site(pool, f"b-{uuid.uuid4().hex[:8]}.example.com", None, rounds=4)
    # The attack: records the producer refuses (MSG_SIZE_TOO_LARGE), here past a producer limit of
    # 20 kB. The API's own check would refuse them at validation: it is lifted, as if it had missed them.
    publisher = Publisher(small_topics, **sized_for_topics(SMALL_TOPIC_BYTES))
    publisher.max_record_bytes = 10**7
    acceptor = Acceptor(pool, publisher, small_topics)
    # Random text: lz4 cannot shrink it under the topic's limit (the broker checks the compressed batch).
    big = [
        acceptor.prepare(identity(a), parse_notification({**EMAIL, "body": secrets.token_urlsafe(40_000)}))
        for _ in range(3)
    ]
    small = [acceptor.prepare(identity(b), parse_notification(EMAIL)) for _ in range(20)]
    results = await asyncio.gather(
        *(acceptor.accept(identity(a), i) for i in big),
        *(acceptor.accept(identity(b), i) for i in small),
        return_exceptions=True,
    )
    await asyncio.to_thread(publisher.close)
    a_results, b_results = results[:3], results[3:]
    assert all(isinstance(r, Accepted) for r in b_results), b_results
    assert all(isinstance(r, NotifyError) and r.code == "kafka_unavailable" for r in a_results), a_results
    assert statuses(pg_dsn, b) == [("PENDING", None)] * 20
    assert statuses(pg_dsn, a) == [("FAILED", "enqueue_failed")] * 3


@pytest.mark.anyio
async def test_a_row_the_database_refuses_fails_alone_in_its_batch(
    pool: Any, pg_dsn: str, kafka_settings: KafkaSettings
) -> None:
    """The safety net behind validation: a row PostgreSQL cannot store (here a NUL, which validation refuses and
    this test smuggles past it) is found by splitting the statement; its batch-mates are stored."""
    a = await sites.register_site(pool, f"a-{uuid.uuid4().hex[:8]}.example.com", None, rounds=4)
    b = await sites.register_site(pool, f"b-{uuid.uuid4().hex[:8]}.example.com", None, rounds=4)
    publisher = Publisher(kafka_settings)
    acceptor = Acceptor(pool, publisher, kafka_settings)
    poisoned = acceptor.prepare(identity(a), parse_notification({**EMAIL, "body": "placeholder"}))
    req = poisoned.req
    poisoned_req = dataclasses.replace(req, content=dataclasses.replace(req.content, body="nul \x00 here"))
    poisoned = acceptor.prepare(identity(a), poisoned_req)
    fine = [acceptor.prepare(identity(b), parse_notification(EMAIL)) for _ in range(7)]
    results = await asyncio.gather(
        *(acceptor.accept(identity(b), i) for i in fine[:3]),
        acceptor.accept(identity(a), poisoned),
        *(acceptor.accept(identity(b), i) for i in fine[3:]),
        return_exceptions=True,
    )
    await asyncio.to_thread(publisher.close)
    assert [type(r).__name__ for r in results] == ["Accepted"] * 3 + ["ValidationFailed"] + ["Accepted"] * 4
    assert statuses(pg_dsn, b) == [("PENDING", None)] * 7 and statuses(pg_dsn, a) == []


def test_an_oversized_record_is_refused_before_it_is_stored(client: httpx.Client, pg_dsn: str) -> None:
    """250,000 "é" pass the character limits; \\u-escaped, the record was ~1.5 MB and the producer refused it."""
    site = register(client)
    body = "é" * 250_000  # 500 kB of UTF-8: now under the limit, since records are no longer escaped
    assert (
        client.post("/api/v1/notifications/send", json={**EMAIL, "body": body}, headers=key_headers(site)).status_code
        == 202
    )
    huge = {**EMAIL, "body": "é" * 200_000, "html": "é" * 300_000}  # 1,000,000 bytes: under the request limit
    refused = client.post("/api/v1/notifications/send", json=huge, headers=key_headers(site))
    assert refused.status_code == 413, refused.text
    error = refused.json()["error"]
    assert error["code"] == "payload_too_large" and error["details"][0]["field"] == "html"
    bulk = client.post("/api/v1/notifications/bulk", json={"items": [huge, EMAIL]}, headers=key_headers(site))
    assert [(r["status"], r.get("error", {}).get("code")) for r in bulk.json()["results"]] == [
        ("rejected", "payload_too_large"),
        ("accepted", None),
    ]
    assert len(statuses(pg_dsn, site)) == 2  # the first send and the bulk's valid item, nothing of the huge ones


def test_the_topics_own_limit_is_learned_at_start(pg_dsn: str, small_topics: KafkaSettings) -> None:
    with (
        ServerThread(create_app(api_settings_for(pg_dsn, small_topics))) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        site = register(http)
        refused = http.post(
            "/api/v1/notifications/send", json={**EMAIL, "body": "x" * 30_000}, headers=key_headers(site)
        )
        assert refused.status_code == 413 and refused.json()["error"]["details"][0]["field"] == "body"
        assert http.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site)).status_code == 202


@pytest.fixture(scope="module")
def strict_api(pg_dsn: str, kafka_settings: KafkaSettings) -> Iterator[str]:
    """An API with small limits, believing X-Forwarded-For from loopback (the test client's proxy)."""
    settings = api_settings_for(
        pg_dsn,
        kafka_settings,
        AUTH_FAILURE_LIMIT="3",
        AUTH_CLIENT_FAILURE_LIMIT="5",
        ADMIN_FAILURE_LIMIT="3",
        KEY_ROTATIONS_PER_HOUR="2",
        API_TRUSTED_PROXIES="127.0.0.1",
        API_BULK_CONCURRENCY_PER_SITE="1",
    )
    with ServerThread(create_app(settings)) as server:
        yield server.url


def wrong_key(site: dict[str, Any]) -> str:
    return f"nfy_{site['api_key'].split('_')[1]}_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"


def send_as(http: httpx.Client, key: str, client: str | None = None) -> httpx.Response:
    headers = {"X-Site-Key": key, **({"X-Forwarded-For": client} if client else {})}
    return http.post("/api/v1/notifications/send", json=EMAIL, headers=headers)


def test_behind_a_trusted_proxy_a_locked_site_still_gets_in_from_its_own_address(strict_api: str) -> None:
    with httpx.Client(base_url=strict_api, timeout=30) as http:
        site = register(http)
        codes = [send_as(http, wrong_key(site), "203.0.113.10").status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert send_as(http, site["api_key"], "203.0.113.10").status_code == 429  # the attacker's address waits
        assert send_as(http, site["api_key"], "198.51.100.20").status_code == 202  # the owner does not


def test_x_forwarded_for_is_not_believed_from_an_untrusted_peer(client: httpx.Client) -> None:
    """The default API trusts no proxy: the attacker cannot pose as a new client by writing a header."""
    site = register(client)
    for i in range(11):  # past AUTH_FAILURE_LIMIT (10), each "from" another address
        send_as(client, wrong_key(site), f"203.0.113.{i}")
    assert send_as(client, wrong_key(site), "198.51.100.99").status_code == 429


def test_admin_token_guessing_is_throttled_per_client(strict_api: str) -> None:
    with httpx.Client(base_url=strict_api, timeout=30) as http:
        wrong = {"Authorization": "Bearer guess", "X-Forwarded-For": "203.0.113.50"}
        assert [http.get("/api/v1/admin/sites", headers=wrong).status_code for _ in range(3)] == [401] * 3
        right_from_guesser = {**ADMIN_HEADERS, "X-Forwarded-For": "203.0.113.50"}
        throttled = http.get("/api/v1/admin/sites", headers=right_from_guesser)
        assert throttled.status_code == 429 and throttled.json()["error"]["code"] == "auth_rate_limited"
        assert int(throttled.headers["Retry-After"]) >= 1
        assert (
            http.get("/api/v1/admin/sites", headers={**ADMIN_HEADERS, "X-Forwarded-For": "198.51.100.1"}).status_code
            == 200
        )


def test_a_site_rotates_its_key_a_bounded_number_of_times(strict_api: str) -> None:
    with httpx.Client(base_url=strict_api, timeout=30) as http:
        key = register(http)["api_key"]
        for _ in range(2):
            rotated = http.post("/api/v1/site/rotate-key", headers={"X-Site-Key": key})
            assert rotated.status_code == 200
            key = rotated.json()["api_key"]
        refused = http.post("/api/v1/site/rotate-key", headers={"X-Site-Key": key})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 60


def test_a_bulk_is_charged_for_its_valid_items_and_gets_what_the_quota_holds(client: httpx.Client, pg_dsn: str) -> None:
    """Before: /bulk was charged for every item, valid or not, and a bulk larger than the per-minute limit
    could never pass."""
    site = register(client)
    client.patch(f"/api/v1/admin/sites/{site['site_name']}", json={"rate_limit_per_minute": 5}, headers=ADMIN_HEADERS)
    invalid = {**EMAIL, "recipient": "not-an-address"}
    items = [invalid, invalid, *[EMAIL] * 8]
    first = client.post("/api/v1/notifications/bulk", json={"items": items}, headers=key_headers(site))
    assert first.status_code == 202
    codes = [r.get("error", {}).get("code", r["status"]) for r in first.json()["results"]]
    assert codes == ["validation_failed"] * 2 + ["accepted"] * 5 + ["rate_limited"] * 3
    assert len(statuses(pg_dsn, site)) == 5
    second = client.post("/api/v1/notifications/bulk", json={"items": [EMAIL]}, headers=key_headers(site))
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("query", ["limit=²", "limit=٣", "limit=1e3", "limit=-1", "limit=99999999999999999999999999"])
def test_numeric_parameters_are_parsed_strictly(client: httpx.Client, site: dict[str, Any], query: str) -> None:
    """Before: limit=² passed str.isdigit() and int() raised: a 500 with a traceback in the log."""
    response = client.get(f"/api/v1/notifications?{query}", headers=key_headers(site))
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "limit"


def test_a_bad_content_length_is_a_clear_error() -> None:
    """The body reader alone (h11 refuses such a header before the app sees it, other servers may not)."""

    async def attempt(length: str) -> str:
        headers = [(b"content-type", b"application/json"), (b"content-length", length.encode())]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        try:
            await read_json(Request({"type": "http", "method": "POST", "headers": headers}, receive), 1024)
        except NotifyError as exc:
            return exc.code
        return "accepted"

    assert asyncio.run(attempt("²")) == "invalid_content_length"
    assert asyncio.run(attempt("2048")) == "payload_too_large"
    assert asyncio.run(attempt("2")) == "accepted"


@pytest.mark.anyio
async def test_a_sites_bulk_requests_are_bounded_before_their_bodies_are_read(strict_api: str) -> None:
    """One site's flood of maximal bulks took the event loop from every other site (measured in `bench
    neighbours`); now a site has API_BULK_CONCURRENCY_PER_SITE bulks at a time (1 here), the rest a cheap 429."""
    async with httpx.AsyncClient(base_url=strict_api, timeout=30) as http:
        site = (
            await http.post(
                "/api/v1/site/register",
                json={"site_name": f"bulk-{uuid.uuid4().hex[:8]}.example.com"},
                headers=ADMIN_HEADERS,
            )
        ).json()
        other = (
            await http.post(
                "/api/v1/site/register",
                json={"site_name": f"other-{uuid.uuid4().hex[:8]}.example.com"},
                headers=ADMIN_HEADERS,
            )
        ).json()
        release = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield b'{"items": ['
            await release.wait()
            yield json.dumps(EMAIL).encode() + b"]}"

        headers = {**key_headers(site), "Content-Type": "application/json"}
        uploading = asyncio.create_task(http.post("/api/v1/notifications/bulk", content=slow_body(), headers=headers))
        await asyncio.sleep(0.5)  # the first bulk holds the site's slot while its body trickles in
        second = await http.post("/api/v1/notifications/bulk", json={"items": [EMAIL]}, headers=key_headers(site))
        assert second.status_code == 429 and second.json()["error"]["code"] == "bulk_in_progress"
        elsewhere = await http.post("/api/v1/notifications/bulk", json={"items": [EMAIL]}, headers=key_headers(other))
        assert elsewhere.status_code == 202  # another site's slots are its own
        release.set()
        assert (await uploading).status_code == 202
        again = await http.post("/api/v1/notifications/bulk", json={"items": [EMAIL]}, headers=key_headers(site))
        assert again.status_code == 202
