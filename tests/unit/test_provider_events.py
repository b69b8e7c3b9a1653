"""SendGrid's signed events: the signature check and the reading of a batch, and which status wins (no I/O)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from functions.sandbox.webhooks import public_key_b64, signed_headers
from lib.adapters.webhook_signatures import SendGridVerifier
from lib.common.settings import ConfigError
from lib.domain.provider_events import parse_sendgrid_events, settled_status
from lib.domain.vocabulary import MessageStatus

KEY = ec.generate_private_key(ec.SECP256R1())


def check(body: bytes, headers: dict[str, str], *, now: float) -> str | None:
    verifier = SendGridVerifier(public_key_b64(KEY))
    return verifier.refusal(
        headers.get("X-Twilio-Email-Event-Webhook-Signature"),
        headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
        body,
        now=now,
        max_age_s=300,
    )


def test_only_sendgrids_fresh_signature_over_these_very_bytes_passes() -> None:
    body = b'[{"event":"delivered"}]'
    headers = signed_headers(KEY, body, timestamp=1_000_000)
    assert check(body, headers, now=1_000_100) is None
    assert check(body + b" ", headers, now=1_000_100) == "bad_signature"  # the body changed
    assert (
        check(body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "1000001"}, now=1_000_100) == "bad_signature"
    )
    assert check(body, headers, now=1_000_400) == "stale"  # replayed late
    assert (
        check(body, signed_headers(ec.generate_private_key(ec.SECP256R1()), body, timestamp=1_000_000), now=1_000_000)
        == "bad_signature"
    )
    assert check(body, {}, now=0) == "unsigned"
    assert (
        check(body, {**headers, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}, now=1_000_000)
        == "bad_signature"
    )
    assert check(body, {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": "\uff11"}, now=0) == "bad_timestamp"
    with pytest.raises(ConfigError):
        SendGridVerifier(base64.b64encode(b"not a key").decode())


def test_a_batch_is_read_by_notifys_id_or_the_providers() -> None:
    message_id = uuid.uuid4()
    batch = [
        {
            "event": "delivered",
            "timestamp": 1700000000,
            "sg_event_id": "e1",
            "notify_message_id": str(message_id),
            "sg_message_id": "abc123.filter0001.1.0",
            "response": "250 OK",
        },
        {"event": "bounce", "type": "blocked", "timestamp": 1700000001, "sg_event_id": "e2", "sg_message_id": "xyz.f"},
        {"event": "made_up", "timestamp": 1, "sg_event_id": "e3"},  # not an event SendGrid sends: skipped
        {"event": "open", "sg_event_id": "e4"},  # no time: skipped
    ]
    first, soft = parse_sendgrid_events(json.loads(json.dumps(batch)))
    assert (first.message_id, first.provider_message_id, first.status, first.reason) == (
        message_id,
        "abc123",
        MessageStatus.DELIVERED,
        "250 OK",
    )
    assert (soft.message_id, soft.provider_message_id, soft.status) == (None, "xyz", None)  # a soft bounce: no status
    for not_a_batch in ({"event": "delivered"}, [1, 2], "x"):
        with pytest.raises(ValueError):
            parse_sendgrid_events(not_a_batch)


def test_the_providers_clock_decides_whatever_the_order_of_arrival() -> None:
    at = [datetime(2026, 12, 7, 10, m, tzinfo=UTC) for m in range(3)]
    assert settled_status([("BOUNCED", at[2], "gone"), ("DELIVERED", at[1], "250")]) == (MessageStatus.BOUNCED, "gone")
    assert settled_status([("DELIVERED", at[2], "250"), ("BOUNCED", at[0], "old")]) == (MessageStatus.DELIVERED, "250")
    assert settled_status([("DELIVERED", at[1], "a"), ("BOUNCED", at[1], "b")]) == (MessageStatus.BOUNCED, "b")
    assert settled_status([]) is None
