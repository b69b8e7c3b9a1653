"""Delivery end to end on the real stack: API, channel workers, sandbox providers, PostgreSQL, Kafka."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Stack
from tests.processes import metric

SENT = {"status": "SENT"}


def is_final(state: dict[str, Any]) -> bool:
    return state["status"] in ("SENT", "FAILED")


def sandbox(stack: Stack, what: str, provider: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(
        f"{stack.sandbox_url}/_sandbox/{what}", params={"provider": provider}
    ).json()["items"]
    return items


def faults(stack: Stack, provider: str, **settings: Any) -> None:
    httpx.put(f"{stack.sandbox_url}/_sandbox/faults/{provider}", json=settings).raise_for_status()


def send(stack: Stack, site: dict[str, str], payload: dict[str, Any]) -> str:
    response = stack.http.post("/api/v1/notifications/send", json=payload, headers={"X-Site-Key": site["X-Site-Key"]})
    assert response.status_code == 202, response.text
    message_id: str = response.json()["message_id"]
    return message_id


def bulk(stack: Stack, site: dict[str, str], items: list[dict[str, Any]]) -> list[str]:
    response = stack.http.post(
        "/api/v1/notifications/bulk", json={"items": items}, headers={"X-Site-Key": site["X-Site-Key"]}
    )
    assert response.status_code == 202 and response.json()["rejected"] == 0, response.text
    return [r["message_id"] for r in response.json()["results"]]


def emails(count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {"channel": "email", "recipient": f"user{i}@example.com", "subject": f"{tag} {i}", "body": f"{tag} {i}"}
        for i in range(count)
    ]


def sent_ids(stack: Stack) -> Counter[str]:
    """How many accepted SendGrid calls each notify message id got."""
    return Counter(m["custom_args"].get("notify_message_id") for m in sandbox(stack, "messages", "sendgrid"))


def test_email_and_whatsapp_reach_their_provider_once(stack: Stack) -> None:
    email_worker = stack.worker("email")
    stack.worker("whatsapp")
    site = stack.register()
    email_id = send(
        stack,
        site,
        {
            "channel": "email",
            "recipient": "ada@example.com",
            "subject": "Invoice",
            "body": "Your invoice",
            "html": "<p>Your invoice</p>",
        },
    )
    whatsapp_id = send(
        stack, site, {"channel": "whatsapp", "recipient": "+14155550123", "body": f"Order {uuid.uuid4()}"}
    )
    states = stack.wait_until([email_id, whatsapp_id], is_final)
    assert {k: v["status"] for k, v in states.items()} == {email_id: "SENT", whatsapp_id: "SENT"}

    [mail] = sandbox(stack, "messages", "sendgrid")
    assert mail["to"] == ["ada@example.com"] and mail["subject"] == "Invoice" and mail["html"] == "<p>Your invoice</p>"
    assert mail["text"] == "Your invoice" and mail["from"] == "notify@example.com"
    assert mail["custom_args"] == {"notify_message_id": email_id, "notify_site_id": site["site_id"]}
    assert states[email_id]["provider_message_id"] == mail["provider_message_id"]
    [chat] = sandbox(stack, "messages", "wasender")
    assert chat["to"] == ["+14155550123"] and chat["text"].startswith("Order ")
    assert states[whatsapp_id]["provider_message_id"] == chat["provider_message_id"]
    assert len(sandbox(stack, "calls", "sendgrid")) == 1 and len(sandbox(stack, "calls", "wasender")) == 1
    assert all(s["attempts"] == 1 for s in states.values())

    daily = stack.http.get("/api/v1/metrics", headers={"X-Site-Key": site["X-Site-Key"]}).json()["items"]
    assert {(d["channel"], d["total"], d["sent"]) for d in daily} == {("email", 1, 1), ("whatsapp", 1, 1)}
    metrics_url = email_worker.health_url.replace("/healthz", "/metrics")
    assert metric(metrics_url, "notify_worker_deliveries_total", channel="email", outcome="sent") == 1


def test_transient_failures_are_retried_with_backoff(stack: Stack) -> None:
    stack.worker("email")
    site = stack.register()
    faults(stack, "sendgrid", fail_next=2, fail_status=503)
    message_id = send(stack, site, emails(1, "retry")[0])
    state = stack.wait_until([message_id], is_final, timeout_s=30)[message_id]
    assert state["status"] == "SENT" and state["attempts"] == 3
    calls = sandbox(stack, "calls", "sendgrid")
    assert [c["status"] for c in calls] == [503, 503, 202]
    gaps = [b["received_at"] - a["received_at"] for a, b in itertools.pairwise(calls)]
    assert 1.0 <= gaps[0] < 1.9 and 2.0 <= gaps[1] < 3.5, gaps  # 1 s then 2 s, plus up to 20% jitter
    assert [e["http_status"] for e in state["attempt_errors"]] == [503, 503]


def test_a_429_is_retried_after_retry_after(stack: Stack) -> None:
    stack.worker("whatsapp")
    site = stack.register()
    faults(stack, "wasender", rate_limit_next=1, retry_after_s=3)
    message_id = send(stack, site, {"channel": "whatsapp", "recipient": "+14155550124", "body": "hi"})
    state = stack.wait_until([message_id], is_final, timeout_s=30)[message_id]
    calls = sandbox(stack, "calls", "wasender")
    assert state["status"] == "SENT" and [c["status"] for c in calls] == [429, 200]
    assert calls[1]["received_at"] - calls[0]["received_at"] >= 3.0


def read_dead_letter(stack: Stack, message_id: str) -> dict[str, Any]:
    consumer = Consumer({**stack.kafka.client_config(), "group.id": f"dlq-{uuid.uuid4().hex}"})
    topic = stack.kafka.dlq_topic("email")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.key() == message_id.encode():
                letter: dict[str, Any] = json.loads(msg.value() or b"{}")
                return letter
    finally:
        consumer.close()
    raise AssertionError("no dead letter")


def test_a_permanent_failure_is_dead_lettered_then_replayed(stack: Stack) -> None:
    stack.worker("email")
    site = stack.register()
    faults(stack, "sendgrid", reject_recipients=["bounce@example.com"])
    payload = {"channel": "email", "recipient": "bounce@example.com", "subject": "s", "body": "b"}
    message_id = send(stack, site, payload)
    state = stack.wait_until([message_id], is_final)[message_id]
    assert (state["status"], state["attempts"], state["failure_code"]) == ("FAILED", 1, "provider_rejected")
    assert "valid address" in state["last_error"]
    assert len(sandbox(stack, "calls", "sendgrid")) == 1  # no retry for a 400
    letter = read_dead_letter(stack, message_id)
    assert letter["record"]["message_id"] == message_id and letter["record"]["recipient"] == "bounce@example.com"
    assert letter["attempts"] == 1 and letter["errors"][0]["http_status"] == 400
    assert letter["failure_code"] == "provider_rejected"

    faults(stack, "sendgrid")  # "fixed"
    replay = stack.http.post(
        "/api/v1/admin/replay", json={"message_id": message_id}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert replay.status_code == 202 and replay.json()["message_ids"] == [message_id]
    state = stack.wait_until([message_id], lambda s: s["status"] == "SENT")[message_id]
    assert state["attempts"] == 2  # the history stays: the failed attempt and the replayed one
    assert [e.get("event") for e in state["attempt_errors"]] == [None, "replayed"]


def test_kill_9_mid_burst_loses_nothing(stack: Stack) -> None:
    faults(stack, "sendgrid", latency_ms=150)
    victim = stack.worker("email", WORKER_CONCURRENCY="64")
    site = stack.register()
    ids = bulk(stack, site, emails(400, "kill"))
    deadline = time.monotonic() + 30
    while sum(sent_ids(stack).values()) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()  # SIGKILL: no drain, no commit, claims left behind
    seen_at_kill = sent_ids(stack)
    assert 0 < len(seen_at_kill) < len(ids)
    time.sleep(0.5)  # statements the victim had already sent to PostgreSQL finish
    left_claimed = {m for m, s in stack.statuses(ids).items() if s["status"] == "PROCESSING"}
    assert left_claimed  # the kill did land mid-burst
    successor = stack.worker("email", WORKER_CONCURRENCY="64")
    states = stack.wait_until(ids, is_final, timeout_s=120)
    assert all(s["status"] == "SENT" for s in states.values())
    time.sleep(0.5)  # calls still finishing in the sandbox after the kill
    calls = sent_ids(stack)
    assert set(calls) == set(ids)  # the provider saw every message
    twice = {m for m, n in calls.items() if n > 1}
    assert all(n <= 2 for n in calls.values())
    # Only a message the victim left claimed (inside a provider call, or answered and its SENT write not yet
    # committed) can go out twice, and the successor counts each one it takes over.
    assert twice <= left_claimed, twice - left_claimed
    resends = metric(
        successor.health_url.replace("/healthz", "/metrics"), "notify_worker_possible_resends_total", channel="email"
    )
    assert resends == len(left_claimed), (resends, len(left_claimed), len(twice))


def test_two_workers_share_a_burst_and_send_each_once(stack: Stack) -> None:
    faults(stack, "sendgrid", latency_ms=20)
    first, second = stack.worker("email"), stack.worker("email")
    deadline = time.monotonic() + 30
    while True:  # both in the group, the topic's partitions split between them
        owned = [httpx.get(w.health_url.replace("/healthz", "/readyz")).json()["partitions"] for w in (first, second)]
        if all(owned) and sorted(owned[0] + owned[1]) == [0, 1, 2, 3]:
            break
        assert time.monotonic() < deadline, owned
        time.sleep(0.2)
    site = stack.register()
    ids = bulk(stack, site, emails(1000, "shared"))
    states = stack.wait_until(ids, is_final, timeout_s=120)
    assert all(s["status"] == "SENT" for s in states.values())
    calls = sent_ids(stack)
    assert set(calls) == set(ids) and set(calls.values()) == {1}
    done = [
        metric(
            w.health_url.replace("/healthz", "/metrics"),
            "notify_worker_deliveries_total",
            channel="email",
            outcome="sent",
        )
        for w in (first, second)
    ]
    assert sum(done) == 1000 and min(done) > 0, done


def test_sigterm_drains_and_exits_cleanly(stack: Stack) -> None:
    faults(stack, "sendgrid", latency_ms=300)
    worker = stack.worker("email", WORKER_CONCURRENCY="32")
    site = stack.register()
    ids = bulk(stack, site, emails(200, "drain"))
    time.sleep(1.0)
    assert worker.terminate() == 0
    states = stack.statuses(ids)
    assert not [s for s in states.values() if s["status"] == "PROCESSING"]  # finished or given back
    stack.worker("email", WORKER_CONCURRENCY="32")
    stack.wait_until(ids, lambda s: s["status"] == "SENT", timeout_s=60)
    assert set(sent_ids(stack).values()) == {1}  # a graceful stop never causes a second send


def set_senders(stack: Stack, site: dict[str, str], policy: dict[str, Any]) -> None:
    name = stack.http.get("/api/v1/site/me", headers={"X-Site-Key": site["X-Site-Key"]}).json()["site_name"]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    stack.http.put(f"/api/v1/admin/sites/{name}/senders", json=policy, headers=admin).raise_for_status()


def test_each_site_sends_as_itself(stack: Stack) -> None:
    stack.worker("email")
    acme, globex, plain = stack.register(), stack.register(), stack.register()
    set_senders(
        stack, acme, {"default": {"email": "billing@acme.example", "name": "Acme, Inc.", "reply_to": "ar@acme.example"}}
    )
    set_senders(
        stack,
        globex,
        {"allowed": [{"email": "news@globex.example", "name": "Globex News"}], "domains": ["münchen.example"]},
    )
    ids = [
        send(stack, acme, emails(1, "acme")[0]),
        send(stack, globex, {**emails(1, "globex")[0], "from": "news@globex.example"}),
        send(stack, globex, {**emails(1, "idn")[0], "from": {"email": "buero@MÜNCHEN.example", "name": "Büro"}}),
        send(stack, plain, emails(1, "plain")[0]),
    ]
    stack.wait_until(ids, lambda s: s["status"] == "SENT")
    mails = {m["custom_args"]["notify_message_id"]: m for m in sandbox(stack, "messages", "sendgrid")}
    assert [(mails[i]["from"], mails[i]["from_name"], mails[i]["reply_to"]) for i in ids] == [
        ("billing@acme.example", '"Acme, Inc."', "ar@acme.example"),  # quoted: SendGrid splits a name at ","
        ("news@globex.example", "Globex News", None),
        ("buero@xn--mnchen-3ya.example", "Büro", None),  # the IDN domain in its ASCII form
        ("notify@example.com", None, None),  # a site without senders: the service's own
    ]


def test_a_10_mb_pdf_and_an_inline_image_arrive_intact(stack: Stack) -> None:
    stack.worker("email")
    site = stack.register()
    pdf = b"%PDF-1.7\n" + os.urandom(10_000_000 - 9)  # 10 MB, random: nothing compresses or dedupes it
    logo = b"\x89PNG\r\n\x1a\n" + os.urandom(2000)
    message_id = send(
        stack,
        site,
        {
            **emails(1, "invoice")[0],
            "html": '<p>Invoice</p><img src="cid:logo">',
            "attachments": [
                {
                    "filename": "SINV-0001.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(pdf).decode(),
                },
                {
                    "filename": "logo.png",
                    "content_type": "image/png",
                    "content": base64.b64encode(logo).decode(),
                    "content_id": "logo",
                },
            ],
        },
    )
    assert stack.wait_until([message_id], is_final, timeout_s=60)[message_id]["status"] == "SENT"
    [mail] = sandbox(stack, "messages", "sendgrid")
    assert mail["attachments"] == [
        {
            "filename": "SINV-0001.pdf",
            "type": "application/pdf",
            "disposition": "attachment",
            "content_id": None,
            "size": len(pdf),
            "sha256": hashlib.sha256(pdf).hexdigest(),
        },
        {
            "filename": "logo.png",
            "type": "image/png",
            "disposition": "inline",
            "content_id": "logo",
            "size": len(logo),
            "sha256": hashlib.sha256(logo).hexdigest(),
        },
    ]


def test_a_whatsapp_document_is_fetched_by_the_provider_from_its_signed_link(stack: Stack) -> None:
    stack.worker("whatsapp")
    site = stack.register()
    pdf = b"%PDF-1.7\n" + os.urandom(300_000)
    upload = stack.http.post(
        "/api/v1/attachments",
        json={
            "filename": "SINV-0002.pdf",
            "content_type": "application/pdf",
            "content": base64.b64encode(pdf).decode(),
        },
        headers={"X-Site-Key": site["X-Site-Key"]},
    )
    assert upload.status_code == 201, upload.text
    message_id = send(
        stack,
        site,
        {
            "channel": "whatsapp",
            "recipient": "+14155550199",
            "body": "Your invoice",
            "media": {"kind": "document", "attachment_id": upload.json()["attachment_id"]},
        },
    )
    assert stack.wait_until([message_id], is_final)[message_id]["status"] == "SENT"
    [chat] = sandbox(stack, "messages", "wasender")
    assert chat["text"] == "Your invoice" and chat["file_name"] == "SINV-0002.pdf"
    link = chat["media"]["documentUrl"]
    assert link.startswith(f"{stack.api_url}/media/{upload.json()['attachment_id']}?expires=")

    def fetched() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(f"{stack.sandbox_url}/_sandbox/media").json()["items"]
        return [f for f in items if f["url"] == link]

    deadline = time.monotonic() + 10
    while not fetched() and time.monotonic() < deadline:
        time.sleep(0.1)
    [got] = fetched()
    assert (got["status"], got["size"], got["sha256"]) == (200, len(pdf), hashlib.sha256(pdf).hexdigest())
    tampered = link.replace("signature=", "signature=0")
    assert httpx.get(tampered).status_code == 403
