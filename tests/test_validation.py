"""Pure validation rules."""

from __future__ import annotations

import pytest

from lib.errors import ValidationFailed
from lib.validation import NotificationRequest, parse_notification


def problems(data: object) -> set[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as failed:
        parse_notification(data)
    return {(p["field"], p["code"]) for p in failed.value.details}


def test_valid_email_and_whatsapp() -> None:
    email = parse_notification(
        {
            "channel": "email",
            "recipient": " a.b+c@mail.example.org ",
            "subject": "S",
            "body": "B",
            "html": "<p>B</p>",
            "metadata": {"doctype": "Sales Invoice"},
        }
    )
    assert email == NotificationRequest(
        "email", "a.b+c@mail.example.org", "B", "S", "<p>B</p>", {"doctype": "Sales Invoice"}
    )
    assert parse_notification({"channel": "whatsapp", "recipient": "+919876543210", "body": "x"}).subject is None


@pytest.mark.parametrize(
    "address",
    ["plain", "a@b", "a b@example.com", "a@@example.com", "@example.com", "a@-example.com", "x" * 65 + "@example.com"],
)
def test_bad_email_addresses(address: str) -> None:
    assert ("recipient", "invalid_email") in problems(
        {"channel": "email", "recipient": address, "subject": "s", "body": "b"}
    )


@pytest.mark.parametrize(
    "number", ["14155550123", "+0123456789", "+1 415 555", "+12", "+1234567890123456", "+1abc5550123"]
)
def test_bad_phone_numbers(number: str) -> None:
    assert ("recipient", "invalid_phone") in problems({"channel": "whatsapp", "recipient": number, "body": "b"})


def test_every_problem_is_listed() -> None:
    found = problems({"channel": "email", "recipient": 7, "subject": "a\nb", "html": 3, "metadata": [], "extra": 1})
    assert found == {
        ("recipient", "wrong_type"),
        ("subject", "invalid"),
        ("html", "wrong_type"),
        ("metadata", "wrong_type"),
        ("extra", "unknown_field"),
        ("body", "required"),
    }


def test_limits_and_channel_rules() -> None:
    assert ("body", "too_long") in problems({"channel": "whatsapp", "recipient": "+14155550123", "body": "x" * 4097})
    assert ("html", "not_supported") in problems(
        {"channel": "whatsapp", "recipient": "+14155550123", "body": "b", "html": "<p/>"}
    )
    assert ("metadata", "too_large") in problems(
        {"channel": "whatsapp", "recipient": "+14155550123", "body": "b", "metadata": {"k": "v" * 9000}}
    )
    assert ("channel", "required") in problems({"recipient": "+14155550123", "body": "b"})
    assert ("body", "required") in problems({"channel": "whatsapp", "recipient": "+14155550123", "body": "  "})


def test_fingerprint_tells_requests_apart() -> None:
    a = parse_notification({"channel": "whatsapp", "recipient": "+14155550123", "body": "b"}, idempotency_key="k")
    b = parse_notification({"channel": "whatsapp", "recipient": "+14155550123", "body": "c"}, idempotency_key="k")
    assert (
        a.fingerprint()
        == parse_notification({"channel": "whatsapp", "recipient": "+14155550123", "body": "b"}).fingerprint()
    )
    assert a.fingerprint() != b.fingerprint()
