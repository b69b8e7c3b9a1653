"""The real stack for end-to-end tests: sandbox providers, the API and channel workers as child processes
(the same commands as the images), over the real PostgreSQL and Kafka. Each test gets its own topics."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.common import free_port
from functions.sandbox.webhooks import public_key_b64
from lib.adapters.kafka import drop_topics, ensure_topics
from lib.common.settings import KafkaSettings
from tests.conftest import ADMIN_TOKEN, KAFKA_BOOTSTRAP, TEST_KEK, TEST_MEDIA_KEY
from tests.processes import Deployable

SENDGRID_KEY = "SG.e2e-sendgrid-key"
WASENDER_KEY = "e2e-wasender-key"
# Sites' own accounts the fake providers also accept (a provider has one account per customer).
SITE_SENDGRID_KEYS = ("SG.e2e-site-account-a", "SG.e2e-site-account-b")
WASENDER_PAT = "e2e-wasender-personal-access-token"  # the account's: creates sessions
# The key the fake SendGrid signs its Event Webhook with; tests sign their own batches with it too.
WEBHOOK_KEY = ec.generate_private_key(ec.SECP256R1())
WASENDER_WEBHOOK_SECRET = "e2e-wasender-webhook-secret"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[str]:
    port = free_port()
    env = {
        "SANDBOX_PORT": str(port),
        "SANDBOX_SENDGRID_API_KEY": ",".join((SENDGRID_KEY, *SITE_SENDGRID_KEYS)),
        "SANDBOX_WASENDER_API_KEY": WASENDER_KEY,
        "SANDBOX_WASENDER_PERSONAL_ACCESS_TOKEN": WASENDER_PAT,
        "SANDBOX_WASENDER_WEBHOOK_SECRET": WASENDER_WEBHOOK_SECRET,
        "SANDBOX_SENDGRID_WEBHOOK_PRIVATE_KEY": WEBHOOK_KEY.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    }
    proc = Deployable("sandbox", "functions.sandbox", env, f"http://127.0.0.1:{port}/healthz").start()
    yield f"http://127.0.0.1:{port}"
    proc.stop()


@dataclass(frozen=True)
class Placement:
    """Where a stack's workers run and how they reach the others: by default this machine's loopback, like the
    API; the fault suite puts them in a network namespace of their own (``tests.faults.network``)."""

    prefix: tuple[str, ...] = ()  # the command that runs a process there
    database_url: str | None = None  # None: the stack's own
    kafka_bootstrap: str | None = None
    sandbox_url: str | None = None
    host: str = "127.0.0.1"  # the workers' health servers listen, and are reached, on this address


class Stack:
    """One test's stack: its own topic prefix, an API process, and the workers it starts."""

    def __init__(
        self,
        pg_dsn: str,
        sandbox_url: str,
        *,
        kafka_bootstrap: str = KAFKA_BOOTSTRAP,
        api_env: dict[str, str] | None = None,
        placement: Placement = Placement(),
    ) -> None:
        self.pg_dsn = pg_dsn
        self.sandbox_url = sandbox_url
        self.placement = placement
        self.kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"e{uuid.uuid4().hex[:8]}")
        ensure_topics(self.kafka, partitions=4, timeout_s=20)
        self.processes: list[Deployable] = []
        self.common = {
            "DATABASE_URL": pg_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "NOTIFY_TOPIC_PREFIX": self.kafka.topic_prefix,
            "LOG_LEVEL": "INFO",
            "NOTIFY_KEY_ENCRYPTION_KEYS": TEST_KEK,
            "NOTIFY_MEDIA_SIGNING_KEY": TEST_MEDIA_KEY,
        }
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = self._start(
            "api",
            "functions.api",
            {
                "NOTIFY_ADMIN_TOKEN": ADMIN_TOKEN,
                "API_PORT": str(port),
                "WASENDER_API_URL": f"{sandbox_url}/api",
                "WASENDER_PERSONAL_ACCESS_TOKEN": WASENDER_PAT,
                "SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64": public_key_b64(WEBHOOK_KEY),
                "WASENDER_WEBHOOK_SECRET": WASENDER_WEBHOOK_SECRET,
                **(api_env or {}),
            },
            f"{self.api_url}/healthz",
        )
        self.http = httpx.Client(base_url=self.api_url, timeout=30)

    def _start(
        self, name: str, module: str, env: dict[str, str], health: str, prefix: tuple[str, ...] = ()
    ) -> Deployable:
        proc = Deployable(f"{name}-{self.kafka.topic_prefix}", module, {**self.common, **env}, health, prefix)
        self.processes.append(proc.start())
        return proc

    def worker(self, channel: str, **overrides: str) -> Deployable:
        port = free_port()
        place = self.placement
        sandbox_url = place.sandbox_url or self.sandbox_url
        env = {
            "DATABASE_URL": place.database_url or self.pg_dsn,
            "KAFKA_BOOTSTRAP_SERVERS": place.kafka_bootstrap or self.kafka.bootstrap_servers,
            "WORKER_HTTP_HOST": place.host,
            "WORKER_HTTP_PORT": str(port),
            # A group per test: a worker killed by an earlier test stays a member until its session times out.
            "KAFKA_CONSUMER_GROUP": f"{self.kafka.topic_prefix}-{channel}",
            "WORKER_LEASE_SECONDS": "5",
            "PROVIDER_TIMEOUT_SECONDS": "2",
            "WORKER_SHUTDOWN_GRACE_SECONDS": "10",
            "PROVIDER_RATE_PER_SEC": "0",
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "SENDGRID_API_URL": sandbox_url,
            "SENDGRID_FROM": "notify@example.com",
            "WASENDER_API_KEY": WASENDER_KEY,
            "WASENDER_API_URL": f"{sandbox_url}/api",
            "NOTIFY_PUBLIC_API_URL": self.api_url,  # where the fake WASender fetches uploaded media
            **overrides,
        }
        health = f"http://{place.host}:{port}/healthz"
        return self._start(f"{channel}-worker-{port}", f"functions.{channel}", env, health, place.prefix)

    def register(self) -> dict[str, str]:
        response = self.http.post(
            "/api/v1/site/register",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            json={"site_name": f"e2e-{uuid.uuid4().hex[:8]}.example.com"},
        )
        assert response.status_code == 201, response.text
        return {"X-Site-Key": response.json()["api_key"]} | {"site_id": response.json()["site_id"]}

    def statuses(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        with psycopg.connect(self.pg_dsn) as conn:
            rows = conn.execute(
                "SELECT id::text, status::text, attempts, provider_message_id, failure_code, last_error, "
                "attempt_errors FROM message_logs WHERE id = ANY(%s::uuid[])",
                (message_ids,),
            ).fetchall()
        return {
            r[0]: {
                "status": r[1],
                "attempts": r[2],
                "provider_message_id": r[3],
                "failure_code": r[4],
                "last_error": r[5],
                "attempt_errors": r[6],
            }
            for r in rows
        }

    def wait_until(
        self, message_ids: list[str], done: Callable[[dict[str, Any]], bool], timeout_s: float = 60
    ) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.statuses(message_ids)
            if len(found) == len(message_ids) and all(done(s) for s in found.values()):
                return found
            if time.monotonic() > deadline:
                pending = {k: v["status"] for k, v in found.items() if not done(v)}
                raise AssertionError(f"{len(pending)} messages not done: {list(pending.items())[:5]}")
            time.sleep(0.2)

    def enable_event_webhook(self) -> None:
        """The fake SendGrid posts its signed events for what it takes to this stack's API (off by default: the
        other tests count SENT)."""
        for provider in ("sendgrid", "wasender"):
            url = f"{self.api_url}/webhooks/{provider}"
            httpx.put(f"{self.sandbox_url}/_sandbox/{provider}/webhook", json={"url": url}).raise_for_status()

    def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # a test may have stopped the sandbox
            for provider in ("sendgrid", "wasender"):
                httpx.put(f"{self.sandbox_url}/_sandbox/{provider}/webhook", json={"url": None})
        self.http.close()
        for proc in reversed(self.processes):
            proc.stop()
        drop_topics(self.kafka, timeout_s=20)


@pytest.fixture
def stack(pg_dsn: str, sandbox: str) -> Iterator[Stack]:
    httpx.delete(f"{sandbox}/_sandbox/messages")
    for provider in ("sendgrid", "wasender"):
        httpx.delete(f"{sandbox}/_sandbox/faults/{provider}")
    built = Stack(pg_dsn, sandbox)
    yield built
    built.close()
