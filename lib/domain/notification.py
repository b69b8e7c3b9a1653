"""One notification, and its projections: the validated request becomes a Kafka record, a row, a provider call
and the public JSON.

- ``Content``: what a message says and to whom. Every shape below carries this one object, never a copy of its
  fields.
- ``NotificationRequest``: what a site asked for, validated (``lib.domain.validation``). It is the model.
- ``NotificationRecord`` (``request.to_record``): the Kafka record. **What it is for:** it tells a channel worker
  that a message exists and is due; the worker reads its ``message_id`` and nothing else, claims that row, and
  delivers what the *row* says (``OutgoingMessage.from_row``). So a record published twice, replayed or
  re-published after a crash can never deliver content other than the stored one. It carries the content anyway
  because the accept path encodes each message once and the insert reads its row from that same text, and
  because a reader of the topic or of a dead letter sees what was sent.
- The row: ``message_logs``, inserted from the record's JSON (``db/queries/messages.sql: insert_messages``).
- ``OutgoingMessage``: what a provider adapter sends, built from the claimed row.
- ``public_json``: what the API answers about a message, built from the row.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from lib.domain.addresses import Sender
from lib.domain.attachments import AttachmentSpec, MediaSpec
from lib.domain.vocabulary import Channel

WIRE_VERSION = 1


@dataclass(frozen=True)
class Content:
    recipient: str
    body: str
    subject: str | None = None
    html: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    sender: Sender | None = None  # email: who it is from (None: the worker's global sender)
    attachments: tuple[AttachmentSpec, ...] = ()  # email: the files it carries (their content is stored apart)
    media: MediaSpec | None = None  # whatsapp: an image, video, document or audio; the body is its caption

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Content:
        return cls(
            row["recipient"],
            row["body"],
            row.get("subject"),
            row.get("html"),
            row.get("metadata") or {},
            Sender.from_json(row.get("sender")),
            tuple(_attachment_refs(row.get("attachments"))),
            MediaSpec.from_json(row.get("media")),
        )

    def is_ascii(self) -> bool:
        name = self.sender.name if self.sender is not None else None
        media = (self.media.url, self.media.filename) if self.media is not None else ()
        texts = (
            self.recipient,
            self.body,
            self.subject,
            self.html,
            name,
            *media,
            *(a.filename for a in self.attachments),
        )
        return all(t is None or t.isascii() for t in texts)


def _attachment_refs(data: Any) -> list[AttachmentSpec]:
    """A record's attachments (ids and names, never content)."""
    if not isinstance(data, list):
        return []
    return [
        AttachmentSpec(UUID(a["id"]), a.get("filename"), a.get("content_type"), a.get("content_id"))
        for a in data
        if isinstance(a, dict) and isinstance(a.get("id"), str)
    ]


@dataclass(frozen=True)
class NotificationRequest:
    channel: Channel
    content: Content
    idempotency_key: str | None = None
    send_at: datetime | None = None  # UTC; a time not in the future sends at once
    transactional: bool = False  # past the suppression list, where the site is allowed to

    def is_scheduled(self, now: datetime) -> bool:
        return self.send_at is not None and self.send_at > now

    def to_record(
        self, message_id: UUID, site_id: UUID, created_at: str, *, sender: Sender | None = None
    ) -> NotificationRecord:
        """The record, going out as ``sender`` (the site's resolution of the requested one)."""
        content = self.content if sender == self.content.sender else replace(self.content, sender=sender)
        return NotificationRecord(str(message_id), str(site_id), self.channel, content, created_at)

    def fingerprint(self) -> str:
        """What makes two requests with one idempotency key "the same request"."""
        c = self.content
        # send_at and from join the list only when given, so the fingerprints stored before they existed match.
        when = [self.send_at.isoformat()] if self.send_at is not None else []
        sender = [c.sender.to_json()] if c.sender is not None else []
        files = [[a.identity() for a in c.attachments]] if c.attachments else []
        media = [c.media.to_json()] if c.media is not None else []
        transactional = ["transactional"] if self.transactional else []
        canonical = json.dumps(
            [
                self.channel,
                c.recipient,
                c.subject,
                c.body,
                c.html,
                c.metadata,
                *when,
                *sender,
                *files,
                *media,
                *transactional,
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class NotificationRecord:
    message_id: str
    site_id: str
    channel: str
    content: Content
    created_at: str = ""
    v: int = WIRE_VERSION

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> NotificationRecord:
        created: datetime | str = row.get("created_at") or ""
        return cls(
            message_id=str(row["id"]),
            site_id=str(row["site_id"]),
            channel=row["channel"],
            content=Content.from_row(row),
            created_at=created.isoformat() if isinstance(created, datetime) else created,
        )

    def key(self) -> bytes:
        return self.message_id.encode()

    def to_bytes(self) -> bytes:
        return self.to_json().encode()

    def to_json(self) -> str:
        # Spelled out rather than dataclasses.asdict, which deep-copies: this runs once per message.
        # The record is flat on the wire: the content's fields sit beside the ids.
        c = self.content
        fields: dict[str, Any] = {
            "message_id": self.message_id,
            "site_id": self.site_id,
            "channel": self.channel,
            "recipient": c.recipient,
            "body": c.body,
            "subject": c.subject,
            "html": c.html,
            "metadata": c.metadata,
            "created_at": self.created_at,
            "v": self.v,
        }
        if c.sender is not None:
            fields["sender"] = c.sender.to_json()
        if c.attachments:
            fields["attachments"] = [a.to_json() for a in c.attachments]
        if c.media is not None:
            fields["media"] = c.media.to_json()
        # Text that is not ASCII goes out as UTF-8, not \u-escaped (an escaped "é" took 6 bytes, and a record
        # three times its text's size); ASCII text takes the escaping encoder, CPython's faster one (2.3x for 16 kB).
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=c.is_ascii())

    @classmethod
    def from_bytes(cls, raw: bytes) -> NotificationRecord:
        """The record, or ValueError for anything else (the worker dead-letters it: any other exception would
        have it retried forever, the partition stuck behind it)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("v") != WIRE_VERSION:
                raise ValueError("not a notification record of a known version")
            if not isinstance(data["message_id"], str):
                raise ValueError("message_id is not a string")
            UUID(data["message_id"])
            return cls(
                message_id=data["message_id"],
                site_id=data["site_id"],
                channel=data["channel"],
                content=Content.from_row(data),
                created_at=data.get("created_at", ""),
                v=data["v"],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a notification record: {exc!r}") from None


@dataclass(frozen=True)
class OutgoingFile:
    """An attachment as a provider call carries it; ``content`` None: it was purged after its retention."""

    filename: str
    content_type: str
    content_id: str | None
    content: bytes | None


@dataclass(frozen=True)
class OutgoingMessage:
    """A provider call: always the claimed row's content, never a record's copy; its files read with it."""

    message_id: str
    site_id: str
    content: Content
    files: tuple[OutgoingFile, ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutgoingMessage:
        return cls(str(row["id"]), str(row["site_id"]), Content.from_row(row))


def public_json(row: dict[str, Any]) -> dict[str, Any]:
    """What the API tells a site about one of its messages."""
    return {
        "message_id": str(row["id"]),
        "channel": row["channel"],
        "recipient": row["recipient"],
        "subject": row["subject"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "failure_code": row["failure_code"],
        "provider_message_id": row["provider_message_id"],
        "idempotency_key": row["idempotency_key"],
        "metadata": row["metadata"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "sent_at": row["sent_at"].isoformat() if row["sent_at"] else None,
        "send_at": row["send_at"].isoformat() if row["send_at"] else None,
        "sender": row["sender"],
    }
