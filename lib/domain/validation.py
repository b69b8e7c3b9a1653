"""Validating a notification request: every problem is reported, each with its field and a stable code."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from lib.domain.addresses import NAME_LIMIT, Sender, ascii_email, is_email_address
from lib.domain.attachments import (
    DEFAULT_MAX_BYTES,
    inline_bytes,
    parse_attachments,
    parse_media,
)
from lib.domain.channels import RULES, ChannelRules
from lib.domain.errors import PayloadTooLarge, ValidationFailed
from lib.domain.notification import Content, NotificationRequest
from lib.domain.vocabulary import CHANNELS, Channel

LIMITS = {
    "recipient": 320,
    "subject": 998,  # RFC 5322's line limit
    "email_body": RULES[Channel.EMAIL].body_limit,
    "whatsapp_body": RULES[Channel.WHATSAPP].body_limit,
    "html": 512 * 1024,
    "metadata_bytes": 8 * 1024,
    "idempotency_key": 255,
}
_ALLOWED_FIELDS = {
    "channel",
    "recipient",
    "subject",
    "body",
    "html",
    "metadata",
    "idempotency_key",
    "send_at",
    "from",
    "attachments",
    "media",
    "transactional",
}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# A header line (the subject) takes no line breaks of any kind: C0/C1 controls (CR, LF, VT, FF, NEL ...) and the
# Unicode line and paragraph separators.
_LINE_BREAKING = {"Cc", "Zl", "Zp"}


def strict_int(raw: str | None) -> int | None:
    """A non-negative integer written in ASCII digits, else None (``str.isdigit`` also takes "²", which ``int``
    refuses). Every number read from a query string or header goes through here."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def storable_text_problem(value: str) -> str | None:
    """Why PostgreSQL could not store this text, if it could not: NUL, or half of a surrogate pair (JSON's
    "\\ud800" decodes to one, and it has no UTF-8 form)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be valid Unicode text (an unpaired surrogate was found)"
    return None


def _storable_json_problem(value: Any) -> str | None:
    """The first unstorable string in a JSON value (keys included), if any."""
    if isinstance(value, str):
        return storable_text_problem(value)
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    else:
        return None
    return next((p for p in map(_storable_json_problem, items) if p is not None), None)


def is_single_line(value: str) -> bool:
    return (value.isascii() and value.isprintable()) or not any(
        unicodedata.category(ch) in _LINE_BREAKING for ch in value
    )


class Problems:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field_name: str, code: str, message: str) -> None:
        self.items.append({"field": field_name, "code": code, "message": message})


def check_idempotency_key(value: Any, problems: Problems | None = None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and _IDEMPOTENCY_KEY.match(value):
        return value
    message = "must be 1-255 printable ASCII characters without spaces"
    if problems is None:
        raise ValidationFailed(
            "invalid Idempotency-Key", details=[{"field": "Idempotency-Key", "code": "invalid", "message": message}]
        )
    problems.add("idempotency_key", "invalid", message)
    return None


def _text(data: dict[str, Any], name: str, problems: Problems, *, required: bool, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            problems.add(name, "required", f"{name} is required")
        return None
    if not isinstance(value, str):
        problems.add(name, "wrong_type", f"{name} must be a string")
        return None
    if required and not value.strip():
        problems.add(name, "required", f"{name} must not be empty")
        return None
    if len(value) > limit:
        problems.add(name, "too_long", f"{name} is longer than {limit} characters")
        return None
    unstorable = storable_text_problem(value)
    if unstorable is not None:
        problems.add(name, "invalid_text", f"{name} {unstorable}")
        return None
    return value


def _check_reply_to(reply_to: Any, problems: Problems) -> None:
    """An email's metadata.reply_to is its Reply-To: one address, checked now rather than refused by the provider."""
    if reply_to is not None and (not isinstance(reply_to, str) or not is_email_address(reply_to)):
        problems.add("metadata.reply_to", "invalid_email", "reply_to must be one valid email address")


def _send_at(value: Any, problems: Problems) -> datetime | None:
    """An RFC 3339 timestamp with its offset (``2026-12-08T09:00:00+01:00``, ``...Z``), as UTC."""
    if value is None:
        return None
    message = "send_at must be an RFC 3339 timestamp with a time zone, such as 2026-12-08T09:00:00+01:00"
    if not isinstance(value, str) or len(value) > 64:
        problems.add("send_at", "invalid", message)
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("no time zone")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across midnight by its offset
        problems.add("send_at", "invalid", message)
        return None


def display_name_problem(name: Any) -> str | None:
    """Why a sender's display name cannot be used, if it cannot: it becomes part of a header line."""
    if not isinstance(name, str):
        return "must be a string"
    if not name.strip() or len(name) > NAME_LIMIT:
        return f"must be 1-{NAME_LIMIT} characters"
    if not is_single_line(name):
        return "must be a single line without control characters"
    return storable_text_problem(name)


def parse_sender(value: Any, field_name: str, problems: Problems, *, with_reply_to: bool = False) -> Sender | None:
    """``"billing@acme.example"`` or ``{"email": ..., "name": ...}`` (and ``reply_to`` where a site's sender is
    configured); the addresses in their ASCII form."""
    if isinstance(value, str):
        value = {"email": value}
    keys = {"email", "name", "reply_to"} if with_reply_to else {"email", "name"}
    if not isinstance(value, dict) or set(value) - keys:
        problems.add(
            field_name, "invalid", f"{field_name} must be an address or an object of {', '.join(sorted(keys))}"
        )
        return None
    reply_to = value.get("reply_to")
    if reply_to is not None:
        reply_to = ascii_email(reply_to) if isinstance(reply_to, str) else None
        if reply_to is None:
            problems.add(f"{field_name}.reply_to", "invalid_email", "reply_to must be one valid email address")
            return None
    address = ascii_email(value["email"]) if isinstance(value.get("email"), str) else None
    if address is None:
        problems.add(field_name, "invalid_email", f"{field_name} must name a valid email address")
    name = value.get("name")
    if name is not None and (problem := display_name_problem(name)) is not None:
        problems.add(f"{field_name}.name", "invalid", f"the display name {problem}")
        return None
    return Sender(address, name, reply_to) if address is not None else None


def attachments_too_large(size: int, limit: int) -> PayloadTooLarge:
    message = f"the attachments are {size} bytes, over the limit of {limit} bytes (decoded, all of them together)"
    return PayloadTooLarge(message, details=[{"field": "attachments", "code": "too_large", "message": message}])


def _channel_field(
    data: dict[str, Any],
    name: str,
    rules: ChannelRules | None,
    takes: Callable[[ChannelRules], bool],
    problems: Problems,
) -> Any:
    """A field only some channels take: its value, or None when absent or refused (not_supported) for this one."""
    value = data.get(name)
    if value is not None and rules is not None and not takes(rules):
        allowed = ", ".join(c for c, r in RULES.items() if takes(r))
        problems.add(name, "not_supported", f"{name} is only for {allowed}")
        return None
    return value


def parse_notification(
    data: Any, *, idempotency_key: str | None = None, attachment_limit: int = DEFAULT_MAX_BYTES
) -> NotificationRequest:
    """Validate one item; raise ValidationFailed listing every problem found."""
    problems = Problems()
    if not isinstance(data, dict):
        raise ValidationFailed(
            "the notification must be a JSON object",
            details=[{"field": "", "code": "wrong_type", "message": "expected an object"}],
        )
    for unknown in sorted(set(data) - _ALLOWED_FIELDS):
        problems.add(unknown, "unknown_field", f"unknown field {unknown!r}")
    channel = data.get("channel")
    if channel not in CHANNELS:
        problems.add(
            "channel",
            "invalid_choice" if channel is not None else "required",
            f"channel must be one of {', '.join(CHANNELS)}",
        )
    rules = RULES[Channel(channel)] if channel in CHANNELS else None  # None: the channel is already refused
    recipient = _text(data, "recipient", problems, required=True, limit=LIMITS["recipient"])
    if recipient is not None:
        recipient = recipient.strip()
        if rules is not None:
            recipient = rules.recipient_form(recipient)
            if recipient is None:
                problems.add("recipient", rules.recipient_code, rules.recipient_rule)
    body_limit = rules.body_limit if rules is not None else LIMITS["email_body"]
    body = _text(data, "body", problems, required=True, limit=body_limit)
    subject_required = rules is not None and rules.subject_required
    subject = _text(data, "subject", problems, required=subject_required, limit=LIMITS["subject"])
    if subject is not None and not is_single_line(subject):
        problems.add("subject", "invalid", "subject must be a single line without control characters")
    html = _text(data, "html", problems, required=False, limit=LIMITS["html"])
    if html is not None and rules is not None and not rules.html_allowed:
        with_html = ", ".join(c for c, r in RULES.items() if r.html_allowed)
        problems.add("html", "not_supported", f"html is only for {with_html}")
    metadata = data.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        problems.add("metadata", "wrong_type", "metadata must be an object")
    elif (unstorable := _storable_json_problem(metadata)) is not None:
        problems.add("metadata", "invalid_text", f"metadata {unstorable}")
    elif len(json.dumps(metadata, ensure_ascii=False).encode()) > LIMITS["metadata_bytes"]:
        problems.add("metadata", "too_large", f"metadata is larger than {LIMITS['metadata_bytes']} bytes")
    elif rules is not None and rules.reply_to:
        _check_reply_to(metadata.get("reply_to"), problems)
    item_key = check_idempotency_key(data.get("idempotency_key"), problems)
    send_at = _send_at(data.get("send_at"), problems)
    sender = None
    raw_from = _channel_field(data, "from", rules, lambda r: r.sender_allowed, problems)
    sender = parse_sender(raw_from, "from", problems) if raw_from is not None else None
    raw_files = _channel_field(data, "attachments", rules, lambda r: r.attachments_allowed, problems)
    attachments = parse_attachments(raw_files, problems) if raw_files is not None else ()
    transactional = data.get("transactional", False)
    if not isinstance(transactional, bool):
        problems.add("transactional", "wrong_type", "transactional must be true or false")
    raw_media = _channel_field(data, "media", rules, lambda r: r.media_allowed, problems)
    media = parse_media(raw_media, problems) if raw_media is not None else None
    if problems.items:
        raise ValidationFailed("the notification is not valid", details=problems.items)
    if (size := inline_bytes(attachments)) > attachment_limit:
        raise attachments_too_large(size, attachment_limit)
    assert recipient is not None and body is not None and isinstance(channel, str)
    content = Content(recipient, body, subject, html, metadata, sender, attachments, media)
    return NotificationRequest(Channel(channel), content, idempotency_key or item_key, send_at, transactional is True)
