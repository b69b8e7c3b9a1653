"""Issue 3's benchmark: one worker process's delivery rate and end-to-end latency against their baselines."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.api import ADMIN, BODY
from bench.common import Child, Report, free_port, fresh_database, fresh_topics, verdict
from bench.tools import Target, attack
from lib.adapters.providers import HttpClients

CONCURRENCY = 64
SENDGRID_KEY = "bench-sendgrid-key"


def _raw_fake(url: str, concurrency: int, seconds: float) -> float:
    """R_fake: a bare httpx loop posting valid Mail Send bodies at the same concurrency."""
    body = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "n@example.com"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": BODY}],
    }

    async def run() -> int:
        done = 0
        # The same client set-up as the workers (see lib.adapters.providers.HttpClients: one big httpx pool is slow).
        client = HttpClients(timeout_s=30, max_connections=concurrency)
        try:
            deadline = time.perf_counter() + seconds

            async def loop() -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    response = await client.post(
                        f"{url}/v3/mail/send", json=body, headers={"Authorization": f"Bearer {SENDGRID_KEY}"}
                    )
                    done += response.status_code == 202

            await asyncio.gather(*(loop() for _ in range(concurrency)))
        finally:
            await client.aclose()
        return done

    started = time.perf_counter()
    done = asyncio.run(run())
    return done / (time.perf_counter() - started)


def _faults(url: str, **settings: Any) -> None:
    httpx.put(f"{url}/_sandbox/faults/sendgrid", json=settings).raise_for_status()
    httpx.delete(f"{url}/_sandbox/messages").raise_for_status()


class Bench:
    def __init__(self) -> None:
        self.dsn = fresh_database("notify_bench_delivery")
        self.kafka = fresh_topics()
        self.common = {
            "DATABASE_URL": self.dsn,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "NOTIFY_TOPIC_PREFIX": self.kafka.topic_prefix,
            "LOG_LEVEL": "WARNING",
        }
        port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.sandbox = Child(
            "sandbox",
            ["-m", "functions.sandbox"],
            {"SANDBOX_PORT": str(port), "SANDBOX_SENDGRID_API_KEY": SENDGRID_KEY, "LOG_LEVEL": "WARNING"},
            f"{self.sandbox_url}/healthz",
        )
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.api = Child(
            "api",
            ["-m", "functions.api"],
            {**self.common, "API_PORT": str(port), "NOTIFY_ADMIN_TOKEN": ADMIN, "STUCK_PENDING_AFTER_SECONDS": "0"},
            f"{self.api_url}/healthz",
        )
        site = httpx.post(
            f"{self.api_url}/api/v1/site/register",
            headers={"Authorization": f"Bearer {ADMIN}"},
            json={"site_name": f"bench-{uuid.uuid4().hex[:6]}.example.com"},
            timeout=30,
        ).json()
        self.key = site["api_key"]

    def worker(self) -> Child:
        port = free_port()
        env = {
            **self.common,
            "WORKER_HTTP_PORT": str(port),
            "WORKER_CONCURRENCY": str(CONCURRENCY),
            "SENDGRID_API_KEY": SENDGRID_KEY,
            "SENDGRID_API_URL": self.sandbox_url,
            "SENDGRID_FROM": "bench@example.com",
            "PROVIDER_RETRY_BASE_SECONDS": "0.2",
        }
        return Child(f"email-worker-{port}", ["-m", "functions.email"], env, f"http://127.0.0.1:{port}/healthz")

    def backlog(self, count: int) -> list[str]:
        return self.post_bulk(
            [
                {"channel": "email", "recipient": f"u{i % 1000}@example.com", "subject": f"s{i}", "body": BODY}
                for i in range(count)
            ]
        )

    def send_target(self, body: bytes) -> Target:
        """One /send request of this bench's site, for the load generator."""
        return Target(
            "POST",
            f"{self.api_url}/api/v1/notifications/send",
            body,
            {"Content-Type": "application/json", "X-Site-Key": self.key},
        )

    def post_bulk(self, items: list[dict[str, Any]]) -> list[str]:
        """Every item through /bulk, 1000 a request; their message ids."""
        ids: list[str] = []
        for start in range(0, len(items), 1000):
            response = httpx.post(
                f"{self.api_url}/api/v1/notifications/bulk",
                json={"items": items[start : start + 1000]},
                headers={"X-Site-Key": self.key},
                timeout=60,
            )
            ids += [r["message_id"] for r in response.json()["results"]]
        return ids

    def wait_final(self, ids: list[str], timeout_s: float = 300) -> list[tuple[str, Any, Any]]:
        """The rows once every message of this bench database is final. The poll is a cheap count, not a lookup
        of every id: it runs on the same cores as the worker being measured."""
        deadline = time.monotonic() + timeout_s
        with psycopg.connect(self.dsn) as conn:
            while True:
                row = conn.execute(
                    "SELECT count(*) FROM message_logs WHERE status NOT IN ('SENT', 'FAILED')"
                ).fetchone()
                if row is not None and row[0] == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the backlog did not drain")
                time.sleep(0.5)
            rows = conn.execute(
                "SELECT status::text, created_at, sent_at FROM message_logs WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchall()
        assert len(rows) == len(ids), "messages missing from message_logs"
        return rows

    def delivery_rate(self, count: int) -> float:
        ids = self.backlog(count)
        worker = self.worker()
        try:
            rows = self.wait_final(ids)
        finally:
            worker.stop()
        sent = sorted(r[2] for r in rows if r[2] is not None)
        span: float = (sent[-1] - sent[0]).total_seconds()
        return (len(sent) - 1) / span

    def stop(self) -> None:
        self.api.stop()
        self.sandbox.stop()


ATTACHMENT_BYTES = 2 * 1024 * 1024


def _raw_bytea_rate(dsn: str, payload: bytes, seconds: float) -> float:
    """The baseline for attachments: the same bytes inserted straight into PostgreSQL (one connection, one row a
    statement, as the API's attachment insert; a logged table, as ``attachments``), MB/s."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS raw_files (id uuid, content bytea)")
        started, count = time.monotonic(), 0
        while time.monotonic() - started < seconds:
            conn.execute("INSERT INTO raw_files VALUES (%s, %s)", (uuid.uuid4(), payload))
            count += 1
        return count * len(payload) / (time.monotonic() - started) / 1e6


def _attachment_rate(bench: Bench, payload: bytes, seconds: float) -> tuple[float, int]:
    """/send with one attachment of ``payload`` as fast as 4 clients go: MB/s of attachment accepted, non-2xx."""
    body = json.dumps(
        {
            "channel": "email",
            "recipient": "files@example.com",
            "subject": "s",
            "body": "b",
            "attachments": [
                {"filename": "f.pdf", "content_type": "application/pdf", "content": base64.b64encode(payload).decode()}
            ],
        }
    ).encode()
    result = attack([bench.send_target(body)], duration_s=seconds, workers=4, timeout_s=60)
    return result.throughput * len(payload) / 1e6, result.non_2xx


def _scheduled_lateness(bench: Bench, rate: float, duration_s: float) -> list[float]:
    """Messages scheduled to fall due at ``rate`` a second for ``duration_s``, starting 5 s from now; each one's
    sent_at - send_at in ms, sorted."""
    count = max(1, int(rate * duration_s))
    first_due = datetime.now(UTC) + timedelta(seconds=5)
    items = [
        {
            "channel": "email",
            "recipient": "late@example.com",
            "subject": "s",
            "body": BODY,
            "send_at": (first_due + timedelta(seconds=i / rate)).isoformat(),
        }
        for i in range(count)
    ]
    worker = bench.worker()
    try:
        ids = bench.post_bulk(items)
        bench.wait_final(ids)
    finally:
        worker.stop()
    with psycopg.connect(bench.dsn) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM sent_at - send_at) * 1000 FROM message_logs WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    return sorted(float(r[0]) for r in rows if r[0] is not None)


def run(duration_s: float) -> Report:
    report = Report(f"Delivery: one email worker process, in-flight limit C = {CONCURRENCY}")
    bench = Bench()
    try:
        rates = {}
        for latency_ms in (0, 100):
            _faults(bench.sandbox_url, latency_ms=latency_ms)
            r_fake = _raw_fake(bench.sandbox_url, CONCURRENCY, duration_s)
            ideal = CONCURRENCY / (latency_ms / 1000) if latency_ms else float("inf")
            _faults(bench.sandbox_url, latency_ms=latency_ms)
            rate = bench.delivery_rate(6000 if latency_ms else 8000)
            rates[latency_ms] = rate
            bound = min(ideal, r_fake)
            report.add(
                f"L = {latency_ms} ms: R_fake (raw httpx loop, C = {CONCURRENCY}), calls/s",
                f"{r_fake:.0f}",
                "C/L = " + ("inf" if ideal == float("inf") else f"{ideal:.0f}"),
            )
            report.add(
                f"L = {latency_ms} ms: worker deliveries/s (incl. PostgreSQL status writes)",
                f"{rate:.0f}",
                f"{rate / bound:.2f} x min(C/L, R_fake)",
                verdict(rate >= 0.8 * bound, ">= 0.8"),
            )

        # End-to-end latency at half the measured capacity (L = 100 ms), accept -> SENT from the rows.
        _faults(bench.sandbox_url, latency_ms=100)
        worker = bench.worker()
        try:
            rate = 0.5 * rates[100]
            body = json.dumps(
                {"channel": "email", "recipient": "e2e@example.com", "subject": "s", "body": BODY}
            ).encode()
            started = time.time()
            accepted = attack([bench.send_target(body)], duration_s=duration_s, rate=rate, workers=16)
            with psycopg.connect(bench.dsn) as conn:
                ids = [
                    r[0] for r in conn.execute("SELECT id::text FROM message_logs WHERE recipient = 'e2e@example.com'")
                ]
            rows = bench.wait_final(ids)
        finally:
            worker.stop()
        lat = sorted((r[2] - r[1]).total_seconds() * 1000 for r in rows if r[2] is not None)
        p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
        report.add(
            f"accept -> SENT at {rate:.0f}/s (L = 100 ms): p50 / p99 ms",
            f"{p50:.0f} / {p99:.0f}",
            f"API p50 {accepted.p50_ms:.1f} ms; {len(lat)} messages in {time.time() - started:.0f} s",
            verdict(p50 <= accepted.p50_ms + 100 + 15 and p99 <= 100 + 100, "p50 <= API p50 + L + 15, p99 <= L + 100"),
        )

        # Scheduled sends falling due at the same steady rate: how late each went out (sent_at - send_at), beside
        # the accept -> SENT latency above (the same path once published: the rest is the scheduler's).
        lateness = _scheduled_lateness(bench, rate, duration_s)
        report.add(
            f"scheduled sends due at {rate:.0f}/s (L = 100 ms): sent_at - send_at p50 / p99 ms",
            f"{statistics.median(lateness):.0f} / {lateness[int(0.99 * (len(lateness) - 1))]:.0f}",
            f"accept -> SENT above: {p50:.0f} / {p99:.0f}; scheduler every 1 s; {len(lateness)} messages",
        )

        # Under injected 429s and 5xx: nothing lost, nothing sent twice.
        _faults(bench.sandbox_url, latency_ms=5, fail_rate=0.15, fail_status=503, rate_limit_next=100, retry_after_s=1)
        ids = bench.backlog(2000)
        worker = bench.worker()
        try:
            rows = bench.wait_final(ids)
        finally:
            worker.stop()
        outcomes = Counter(r[0] for r in rows)
        calls = httpx.get(f"{bench.sandbox_url}/_sandbox/messages", params={"provider": "sendgrid"}).json()["items"]
        per_id = Counter(c["custom_args"].get("notify_message_id") for c in calls)
        stats = httpx.get(f"{bench.sandbox_url}/_sandbox/stats").json()["sendgrid"]
        twice = sum(1 for n in per_id.values() if n > 1)
        report.add(
            "2000 messages under 15% 503s and 100 429s: final states",
            json.dumps(dict(outcomes)),
            f"provider answers {json.dumps(stats)}",
            verdict(
                sum(outcomes.values()) == 2000 and twice == 0 and outcomes["SENT"] == len(per_id),
                f"nothing lost; {twice} sent twice",
            ),
        )
        # Attachments through /send (stored in PostgreSQL, the record names them), beside the raw insert of the
        # same bytes. No worker runs: this is the accept path alone
        # (last: the messages it accepts stay queued).
        payload = os.urandom(ATTACHMENT_BYTES)
        raw_mb_s = _raw_bytea_rate(bench.dsn, payload, duration_s)
        send_mb_s, refused = _attachment_rate(bench, payload, duration_s)
        report.add(
            f"/send with a {ATTACHMENT_BYTES // 1024 // 1024} MB attachment (4 clients), attachment MB/s accepted",
            f"{send_mb_s:.1f}",
            f"{send_mb_s / raw_mb_s:.2f} x the raw insert of the same bytes ({raw_mb_s:.1f} MB/s); non-2xx {refused}",
        )
    finally:
        bench.stop()
    return report
