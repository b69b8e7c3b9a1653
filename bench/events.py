"""Provider events in: SendGrid Event Webhook batches of 100 through ``/webhooks/sendgrid`` (signature checked,
every event stored), beside a bare endpoint that reads the same requests and answers 204."""

from __future__ import annotations

import json
import secrets
import time
import uuid

from cryptography.hazmat.primitives.asymmetric import ec

from bench.api import _api_env, _server
from bench.common import Report, fresh_database, fresh_topics
from bench.tools import Target, attack
from functions.sandbox.webhooks import public_key_b64, signed_headers

BATCH = 100
DISTINCT_BATCHES = 1500  # every event of a run is new: none meets ON CONFLICT
CONNECTIONS = 16


def _targets(url: str, key: ec.EllipticCurvePrivateKey) -> list[Target]:
    now = int(time.time())
    targets = []
    for _ in range(DISTINCT_BATCHES):
        events = [
            {
                "email": "ada@example.com",
                "event": "delivered",
                "timestamp": now,
                "sg_event_id": secrets.token_urlsafe(16),
                "sg_message_id": f"{secrets.token_urlsafe(12)}.filter0001",
                "notify_message_id": str(uuid.uuid4()),
                "response": "250 OK",
            }
            for _ in range(BATCH)
        ]
        raw = json.dumps(events).encode()
        targets.append(Target("POST", f"{url}/webhooks/sendgrid", raw, signed_headers(key, raw, timestamp=now)))
    return targets


def run(duration_s: float) -> Report:
    report = Report(f"Provider events in: SendGrid batches of {BATCH} through /webhooks/sendgrid")
    key = ec.generate_private_key(ec.SECP256R1())
    env = {
        **_api_env(fresh_database("notify_bench_events"), fresh_topics()),
        "SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64": public_key_b64(key),
    }
    sink, sink_url = _server("sink", env)
    try:
        bare = attack(_targets(sink_url, key), duration_s=duration_s, workers=CONNECTIONS)
    finally:
        sink.stop()
    api, url = _server("api", env)
    try:
        ingest = attack(_targets(url, key), duration_s=duration_s, workers=CONNECTIONS)
    finally:
        api.stop()
    report.add(
        f"bare endpoint reading the same requests ({CONNECTIONS} connections), events/s",
        f"{bare.throughput * BATCH:.0f}",
        f"{bare.throughput:.0f} requests/s; non-2xx {bare.non_2xx}",
    )
    report.add(
        "/webhooks/sendgrid: verified and stored, events/s",
        f"{ingest.throughput * BATCH:.0f}",
        f"{ingest.throughput / max(bare.throughput, 1e-9):.2f} x the bare endpoint; p50 / p99 {ingest.p50_ms:.0f} /"
        f" {ingest.p99_ms:.0f} ms; non-2xx {ingest.non_2xx}",
    )
    return report
