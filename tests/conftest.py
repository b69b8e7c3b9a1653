"""Test fixtures over the real local PostgreSQL and Kafka (started by scripts/test.sh).

Each test module gets its own database, a copy of one migrated once per run (``pg_template``), and each session
its own topic prefix, so runs and modules never see each other's data; sites are registered with unique names.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from bench.common import free_port
from functions.api.app import create_app
from functions.api.settings import ApiSettings
from lib.adapters.kafka import drop_topics, ensure_topics
from lib.adapters.migrate import migrate
from lib.common.settings import KafkaSettings

PG_ADMIN_DSN = os.environ.get("NOTIFY_TEST_PG", "postgresql://notify:notify@127.0.0.1:55432/notify")
KAFKA_BOOTSTRAP = os.environ.get("NOTIFY_TEST_KAFKA", "127.0.0.1:9092")
ADMIN_TOKEN = "test-admin-token"
# Test-only key-encryption key (sites' own provider keys are sealed under it); production's comes from a Secret.
TEST_KEK = "Z3k1fLIx7C1vNxDXeCZeJvgo01otd59GWr7LOtJ3pvc="
TEST_MEDIA_KEY = "test-media-signing-key"


def dsn_for(database: str) -> str:
    return psycopg.conninfo.make_conninfo(PG_ADMIN_DSN, dbname=database)


def create_database(name: str) -> str:
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.exit(f"PostgreSQL is not reachable at {PG_ADMIN_DSN} (run scripts/test.sh): {exc}", returncode=3)
    return dsn_for(name)


def drop_database(name: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    # An autovacuum worker in the database (it has no role) cannot be terminated by FORCE as the notify role;
    # it is gone a moment later.
    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per run; every test module gets a copy of it."""
    name = f"notify_tpl_{uuid.uuid4().hex[:8]}"
    migrate(create_database(name))
    yield name
    drop_database(name)


@pytest.fixture(scope="module")
def pg_dsn(pg_template: str) -> Iterator[str]:
    name = f"notify_test_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield dsn_for(name)
    drop_database(name)


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[KafkaSettings]:
    settings = KafkaSettings(bootstrap_servers=KAFKA_BOOTSTRAP, topic_prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        ensure_topics(settings, partitions=3, timeout_s=20)
    except Exception as exc:
        pytest.exit(f"Kafka is not reachable at {KAFKA_BOOTSTRAP} (run scripts/test.sh): {exc}", returncode=3)
    yield settings
    drop_topics(settings, timeout_s=20)


class ServerThread:
    """A real uvicorn server on a loopback port, in a background thread with its own event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="on",
                access_log=False,
                proxy_headers=False,  # as the API's own server: X-Forwarded-For is the app's to read
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def api_settings_for(pg_dsn: str, kafka: KafkaSettings, **overrides: str) -> ApiSettings:
    environ = {
        "NOTIFY_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NOTIFY_TOPIC_PREFIX": kafka.topic_prefix,
        "DB_POOL_MAX": "20",
        "KEY_BCRYPT_ROUNDS": "4",  # test-only: production keys take 12 (tests/unit/test_settings.py)
        "NOTIFY_KEY_ENCRYPTION_KEYS": TEST_KEK,
        "NOTIFY_MEDIA_SIGNING_KEY": TEST_MEDIA_KEY,
        **overrides,
    }
    return ApiSettings.from_env(environ)


@pytest.fixture(scope="module")
def api_url(pg_dsn: str, kafka_settings: KafkaSettings) -> Iterator[str]:
    with ServerThread(create_app(api_settings_for(pg_dsn, kafka_settings))) as server:
        yield server.url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def register(http: httpx.Client, name: str | None = None) -> dict[str, Any]:
    name = name or f"site-{uuid.uuid4().hex[:10]}.example.com"
    response = http.post("/api/v1/site/register", json={"site_name": name}, headers=ADMIN_HEADERS)
    assert response.status_code == 201, response.text
    site: dict[str, Any] = response.json()
    return site


@pytest.fixture
def site(client: httpx.Client) -> dict[str, Any]:
    return register(client)


def key_headers(site: dict[str, Any]) -> dict[str, str]:
    return {"X-Site-Key": site["api_key"]}


EMAIL = {"channel": "email", "recipient": "ada@example.com", "subject": "Hello", "body": "Hi Ada"}
WHATSAPP = {"channel": "whatsapp", "recipient": "+14155550123", "body": "Hi Ada"}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
