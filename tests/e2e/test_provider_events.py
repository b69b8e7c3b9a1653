"""SendGrid's Event Webhook end to end: the fake SendGrid posts signed events for what it takes; notify verifies
them, stores each once, and moves the message to what the provider's own clock says last; a timeline per message."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

from functions.sandbox.webhooks import signed_headers
from tests.e2e.conftest import WASENDER_WEBHOOK_SECRET, WEBHOOK_KEY, Stack
from tests.e2e.test_delivery import emails, faults, send


def post_events(
    stack: Stack, events: list[dict[str, Any]], key: ec.EllipticCurvePrivateKey = WEBHOOK_KEY, **kw: Any
) -> httpx.Response:
    raw = json.dumps(events).encode()
    return stack.http.post("/webhooks/sendgrid", content=raw, headers=signed_headers(key, raw, **kw))


def event(message_id: str, kind: str, at: int, **extra: Any) -> dict[str, Any]:
    return {
        "notify_message_id": message_id,
        "event": kind,
        "timestamp": at,
        "sg_event_id": secrets.token_hex(8),
        **extra,
    }


def timeline(stack: Stack, site: dict[str, str], message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = stack.http.get(
        f"/api/v1/notifications/{message_id}/events", headers={"X-Site-Key": site["X-Site-Key"]}
    ).json()
    return found


def test_delivered_and_bounced_come_back_and_show_in_the_timeline(stack: Stack) -> None:
    stack.enable_event_webhook()
    stack.worker("email")
    site, other = stack.register(), stack.register()
    faults(stack, "sendgrid", bounce_recipients=["gone@example.com"])
    delivered = send(stack, site, emails(1, "ok")[0])
    bounced = send(stack, site, {**emails(1, "bounce")[0], "recipient": "gone@example.com"})
    states = stack.wait_until([delivered, bounced], lambda s: s["status"] in ("DELIVERED", "BOUNCED"), timeout_s=30)
    assert (states[delivered]["status"], states[bounced]["status"]) == ("DELIVERED", "BOUNCED")
    assert "does not exist" in (states[bounced]["last_error"] or "")
    story = timeline(stack, site, delivered)
    kinds = [e["event"] for e in story["events"]]  # by time (the provider's clock counts whole seconds)
    assert sorted(kinds) == ["accepted", "delivered", "processed", "sent"] and kinds[-1] == "delivered"
    assert story["status"] == "DELIVERED"
    assert (
        stack.http.get(
            f"/api/v1/notifications/{delivered}/events", headers={"X-Site-Key": other["X-Site-Key"]}
        ).status_code
        == 404
    )  # another site's
    daily = stack.http.get("/api/v1/metrics", headers={"X-Site-Key": site["X-Site-Key"]}).json()["items"]
    assert [(d["total"], d["sent"], d["delivered"], d["bounced"]) for d in daily] == [(2, 0, 1, 1)]


def test_forged_stale_repeated_and_late_events_change_nothing_they_should_not(stack: Stack) -> None:
    stack.enable_event_webhook()
    stack.worker("email")
    site = stack.register()
    message_id = send(stack, site, emails(1, "order")[0])
    stack.wait_until([message_id], lambda s: s["status"] == "DELIVERED", timeout_s=30)
    now = int(time.time())

    stranger = ec.generate_private_key(ec.SECP256R1())
    bounce_now = [event(message_id, "bounce", now + 60, type="bounce", reason="forged")]
    assert post_events(stack, bounce_now, stranger).status_code == 403  # not SendGrid's key
    assert post_events(stack, bounce_now, timestamp=now - 3600).status_code == 403  # a replay of an old request
    unsigned = stack.http.post("/webhooks/sendgrid", json=bounce_now)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "webhook_unsigned"
    time.sleep(1.5)
    assert stack.statuses([message_id])[message_id]["status"] == "DELIVERED"

    # A bounce the provider's clock puts before the delivery arrives late: the delivery stands.
    early = [event(message_id, "bounce", now - 600, type="bounce", reason="an old bounce")]
    assert post_events(stack, early).status_code == 204
    assert post_events(stack, early).status_code == 204  # the same event again: stored once
    time.sleep(1.5)
    assert stack.statuses([message_id])[message_id]["status"] == "DELIVERED"
    assert [e["event"] for e in timeline(stack, site, message_id)["events"]].count("bounce") == 1

    # A later one moves it.
    assert (
        post_events(stack, [event(message_id, "bounce", now + 600, type="bounce", reason="mailbox gone")]).status_code
        == 204
    )
    state = stack.wait_until([message_id], lambda s: s["status"] == "BOUNCED", timeout_s=10)[message_id]
    assert state["last_error"] == "mailbox gone"


def test_a_hard_bounce_suppresses_the_address_and_the_next_send_is_refused(stack: Stack) -> None:
    stack.enable_event_webhook()
    stack.worker("email")
    site = stack.register()
    faults(stack, "sendgrid", bounce_recipients=["dead@example.com"])
    first = send(stack, site, {**emails(1, "first")[0], "recipient": "dead@example.com"})
    stack.wait_until([first], lambda s: s["status"] == "BOUNCED", timeout_s=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        items = stack.http.get("/api/v1/suppressions", headers={"X-Site-Key": site["X-Site-Key"]}).json()["items"]
        if items:
            break
        time.sleep(0.2)
    assert [(s["recipient"], s["reason"]) for s in items] == [("dead@example.com", "bounce")]
    refused = stack.http.post(
        "/api/v1/notifications/send",
        json={**emails(1, "second")[0], "recipient": "dead@example.com"},
        headers={"X-Site-Key": site["X-Site-Key"]},
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "recipient_suppressed"


def test_whatsapp_statuses_come_back_from_wasenders_webhook(stack: Stack) -> None:
    stack.enable_event_webhook()
    stack.worker("whatsapp")
    site = stack.register()
    message_id = send(stack, site, {"channel": "whatsapp", "recipient": "+14155550177", "body": "hi"})
    state = stack.wait_until([message_id], lambda s: s["status"] == "DELIVERED", timeout_s=30)[message_id]
    provider_id = state["provider_message_id"]

    def update(status: int, at_ms: int, secret: str = WASENDER_WEBHOOK_SECRET) -> httpx.Response:
        body = {
            "event": "messages.update",
            "sessionId": "a-session-key",
            "data": {"update": {"status": status}, "key": {"remoteJid": "x", "id": int(provider_id), "fromMe": True}},
            "timestamp": at_ms,
        }
        return stack.http.post("/webhooks/wasender", json=body, headers={"X-Webhook-Signature": secret})

    now_ms = int(time.time() * 1000)
    assert update(4, now_ms + 5000, secret="not-the-secret").status_code == 403
    assert stack.http.post("/webhooks/wasender", json={"event": "messages.update"}).status_code == 401
    assert update(4, now_ms + 5000).status_code == 200  # read
    stack.wait_until([message_id], lambda s: s["status"] == "READ", timeout_s=10)
    assert update(3, now_ms - 60_000).status_code == 200  # a delivered update from before the read: changes nothing
    time.sleep(1.5)
    assert stack.statuses([message_id])[message_id]["status"] == "READ"
    kinds = [e["event"] for e in timeline(stack, site, message_id)["events"]]
    assert {"sent", "delivered", "read"} <= set(kinds)
    with psycopg.connect(stack.pg_dsn) as conn:  # the session's key in the payload is never kept
        kept = conn.execute("SELECT count(*) FROM provider_events WHERE payload ? 'sessionId'").fetchone()
    assert kept == (0,)
