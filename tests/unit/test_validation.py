"""Pure validation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lib.domain.channels import RULES
from lib.domain.errors import ValidationFailed
from lib.domain.notification import Content, NotificationRequest
from lib.domain.validation import parse_notification, strict_int
from lib.domain.vocabulary import Channel


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
        Channel.EMAIL, Content("a.b+c@mail.example.org", "B", "S", "<p>B</p>", {"doctype": "Sales Invoice"})
    )
    whatsapp = parse_notification({"channel": "whatsapp", "recipient": "+919876543210", "body": "x"})
    assert whatsapp.content.subject is None


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


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\v", "\f", "\t", "\x1b", "\x9b", "\r", "\n"])
def test_subjects_take_no_line_separator_or_control_character(separator: str) -> None:
    """Issue 14 (4): only CR and LF were refused; U+2028, NEL, VT and other controls passed into the header."""
    email = {"channel": "email", "recipient": "a@example.com", "body": "b", "subject": f"Invoice{separator}Bcc: x"}
    assert ("subject", "invalid") in problems(email)
    assert (
        parse_notification({**email, "subject": "Facture n° 42 — réglée ✓"}).content.subject
        == "Facture n° 42 — réglée ✓"
    )


@pytest.mark.parametrize("text", ["nul\x00here", "half \ud800 a pair"])
def test_text_postgresql_cannot_store_is_refused(text: str) -> None:
    """A NUL or a lone surrogate failed the whole group-commit insert (every site's request in the batch)."""
    base = {"channel": "email", "recipient": "a@example.com", "subject": "s", "body": "b"}
    assert ("body", "invalid_text") in problems({**base, "body": text})
    assert ("subject", "invalid_text") in problems({**base, "subject": text})
    assert ("metadata", "invalid_text") in problems({**base, "metadata": {"doc": [text]}})
    assert ("metadata", "invalid_text") in problems({**base, "metadata": {text: 1}})


@pytest.mark.parametrize("reply_to", ["a@b, c@d", "plain", " a@example.com", 42])
def test_reply_to_is_one_address(reply_to: object) -> None:
    """metadata.reply_to with any "@" got 202 and then failed at the provider."""
    email = {"channel": "email", "recipient": "a@example.com", "subject": "s", "body": "b"}
    assert ("metadata.reply_to", "invalid_email") in problems({**email, "metadata": {"reply_to": reply_to}})
    accepted = parse_notification({**email, "metadata": {"reply_to": "billing@example.com"}})
    assert accepted.content.metadata == {"reply_to": "billing@example.com"}


def test_strict_int_takes_ascii_digits_only() -> None:
    assert [strict_int(v) for v in ("0", "42", "²", "٣", "-1", "1e3", " 1", "", None)] == [0, 42] + [None] * 7


def test_every_channel_has_its_rules_in_the_registry() -> None:
    """A channel added to the vocabulary without its entry in lib.domain.channels fails here, not at a request."""
    assert set(RULES) == set(Channel)
    for channel, rules in RULES.items():
        assert rules.body_limit > 0 and rules.recipient_code.startswith("invalid_"), channel


def test_send_at_is_rfc_3339_with_a_zone_kept_as_utc() -> None:
    base = {"channel": "whatsapp", "recipient": "+919876543210", "body": "x"}
    berlin = parse_notification({**base, "send_at": "2026-12-09T09:00:00+01:00"})
    zulu = parse_notification({**base, "send_at": "2026-12-09T08:00:00Z"})
    assert berlin.send_at == zulu.send_at == datetime(2026, 12, 9, 8, tzinfo=UTC)
    assert berlin.send_at is not None and berlin.send_at.utcoffset() == timedelta(0)
    assert berlin.is_scheduled(datetime(2026, 12, 9, 7, 59, tzinfo=UTC))
    assert not berlin.is_scheduled(datetime(2026, 12, 9, 8, tzinfo=UTC))  # due: sent at once
    assert parse_notification(base).send_at is None
    for bad in ["2026-12-09T09:00:00", "2026-12-09", "next tuesday", 1765184400, "", "0001-01-01T00:00:00+01:00"]:
        assert problems({**base, "send_at": bad}) == {("send_at", "invalid")}, bad


def test_send_at_is_part_of_the_fingerprint_only_when_given() -> None:
    base = {"channel": "whatsapp", "recipient": "+919876543210", "body": "x"}
    plain = parse_notification(base)
    # The fingerprint of a request without send_at is what the code before send_at computed (stored rows match).
    assert plain.fingerprint() == "3a5da343bef23f008ad7931f282eef102bef2ff7f54364a501de9e15f0634012"
    nine = parse_notification({**base, "send_at": "2026-12-09T09:00:00+01:00"})
    assert nine.fingerprint() == parse_notification({**base, "send_at": "2026-12-09T08:00:00Z"}).fingerprint()
    assert len({plain.fingerprint(), nine.fingerprint()}) == 2
