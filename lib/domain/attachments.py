"""Email attachments as a send names them: inline (base64 in the JSON body) or uploaded once before
(``POST /api/v1/attachments``) and named by id, each with its file name, content type and optional content-id
(an inline image the html shows as ``cid:...``).

The content never travels in a Kafka record: it is stored in PostgreSQL (``attachments``), the message links to
it (``message_attachments``), and the worker reads it when it sends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

MAX_ATTACHMENTS = 10
DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # decoded, all of one message's together (SendGrid's own cap: 30 MB)
# What mail clients open safely; executables and scripts are refused.
ALLOWED_CONTENT_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/json",
        "application/xml",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "text/plain",
        "text/csv",
        "text/calendar",
        "audio/mpeg",
        "audio/ogg",
        "video/mp4",
    }
)
_CONTENT_ID = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\"]')


class ProblemList(Protocol):
    def add(self, field_name: str, code: str, message: str) -> None: ...


@dataclass(frozen=True)
class AttachmentSpec:
    """One attachment of a send. ``content`` for an inline one (decoded); an uploaded one has none here and its
    ``filename``/``content_type`` may be left to the upload's."""

    attachment_id: uuid.UUID
    filename: str | None
    content_type: str | None
    content_id: str | None = None
    content: bytes | None = None

    @property
    def uploaded(self) -> bool:
        return self.content is None

    def identity(self) -> list[Any]:
        """What tells two sends' attachments apart (the idempotency fingerprint): an inline one by its bytes."""
        which = hashlib.sha256(self.content).hexdigest() if self.content is not None else str(self.attachment_id)
        return [which, self.filename, self.content_type, self.content_id]

    def to_json(self) -> dict[str, Any]:
        """As the record and the row's link carry it (never the content)."""
        return {
            "id": str(self.attachment_id),
            "filename": self.filename,
            "content_type": self.content_type,
            "content_id": self.content_id,
        }


def filename_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        return "must be a file name of 1-255 characters"
    if _UNSAFE_NAME.search(value):
        return "must not hold control characters, quotes or path separators"
    return None


def content_type_of(value: Any) -> str | None:
    """The media type without parameters, lower-cased, if it is one notify accepts."""
    if not isinstance(value, str):
        return None
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type if media_type in ALLOWED_CONTENT_TYPES else None


def decode_content(value: Any) -> bytes | None:
    """Strict base64 (RFC 4648, no line breaks), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_attachment(raw: Any, field: str, problems: ProblemList) -> AttachmentSpec | None:
    """One item: ``{"filename", "content_type", "content"(base64), "content_id"?}`` or
    ``{"attachment_id", "filename"?, "content_type"?, "content_id"?}``."""

    def at(name: str) -> str:
        return f"{field}.{name}" if field else name

    if not isinstance(raw, dict) or set(raw) - {"filename", "content_type", "content", "content_id", "attachment_id"}:
        problems.add(field, "invalid", "an attachment is an object of filename, content_type, content, content_id")
        return None
    uploaded = raw.get("attachment_id") is not None
    ok = True
    attachment_id = uuid.uuid4()
    if uploaded:
        try:
            attachment_id = uuid.UUID(str(raw["attachment_id"]))
        except ValueError:
            problems.add(at("attachment_id"), "invalid", "must be the id POST /api/v1/attachments gave")
            ok = False
        if raw.get("content") is not None:
            problems.add(at("content"), "invalid", "give content or attachment_id, not both")
            ok = False
    if (not uploaded or raw.get("filename") is not None) and (problem := filename_problem(raw.get("filename"))):
        problems.add(at("filename"), "invalid", f"filename {problem}")
        ok = False
    content_type = content_type_of(raw.get("content_type"))
    if (not uploaded or raw.get("content_type") is not None) and content_type is None:
        problems.add(at("content_type"), "not_allowed", "content_type must be one of the allowed types")
        ok = False
    content = None if uploaded else decode_content(raw.get("content"))
    if not uploaded and content is None:
        problems.add(at("content"), "invalid_base64", "content must be the file's bytes in base64")
        ok = False
    content_id = raw.get("content_id")
    if content_id is not None and (not isinstance(content_id, str) or not _CONTENT_ID.match(content_id)):
        problems.add(at("content_id"), "invalid", "content_id must be 1-100 of A-Z a-z 0-9 . _ @ -")
        ok = False
    if not ok:
        return None
    return AttachmentSpec(attachment_id, raw.get("filename"), content_type, content_id, content)


def parse_attachments(value: Any, problems: ProblemList) -> tuple[AttachmentSpec, ...]:
    if not isinstance(value, list) or not value or len(value) > MAX_ATTACHMENTS:
        problems.add("attachments", "invalid", f"attachments must be a list of 1-{MAX_ATTACHMENTS} attachments")
        return ()
    found = (parse_attachment(item, f"attachments[{i}]", problems) for i, item in enumerate(value))
    return tuple(a for a in found if a is not None)


def inline_bytes(specs: tuple[AttachmentSpec, ...]) -> int:
    return sum(len(a.content) for a in specs if a.content is not None)


MEDIA_KINDS = ("image", "video", "document", "audio")
_MAX_URL = 2048


@dataclass(frozen=True)
class MediaSpec:
    """A WhatsApp message's media: a file the provider fetches, from the client's https URL or from notify
    itself (an upload, served at a signed, expiring link); the message's body is its caption."""

    kind: str
    url: str | None = None
    attachment_id: uuid.UUID | None = None
    filename: str | None = None

    def to_json(self) -> dict[str, Any]:
        found = {
            "kind": self.kind,
            "url": self.url,
            "attachment_id": str(self.attachment_id) if self.attachment_id else None,
            "filename": self.filename,
        }
        return {k: v for k, v in found.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any) -> MediaSpec | None:
        if not isinstance(data, dict) or data.get("kind") not in MEDIA_KINDS:
            return None
        attachment_id = data.get("attachment_id")
        return cls(
            data["kind"], data.get("url"), uuid.UUID(attachment_id) if attachment_id else None, data.get("filename")
        )


def media_url_problem(url: str) -> str | None:
    """Why a client's media URL is refused: https only, a host name (no credentials, no address literal: a
    provider fetches it, and notify never points one at a private address)."""
    parsed = urlsplit(url)
    if parsed.scheme != "https" or not parsed.hostname or len(url) > _MAX_URL:
        return f"url must be an https URL of at most {_MAX_URL} characters"
    if parsed.username or parsed.password:
        return "url must not carry credentials"
    try:
        ipaddress.ip_address(parsed.hostname.strip("[]"))
    except ValueError:
        return None if "." in parsed.hostname and parsed.hostname != "localhost" else "url must name a public host"
    return "url must name a host, not an address"


def parse_media(raw: Any, problems: ProblemList) -> MediaSpec | None:
    """``{"kind": image|video|document|audio, "url": "https://..."}`` or ``{"kind", "attachment_id"}``, with
    ``filename`` for a document."""
    if not isinstance(raw, dict) or set(raw) - {"kind", "url", "attachment_id", "filename"}:
        problems.add("media", "invalid", "media is an object of kind, url or attachment_id, and filename")
        return None
    kind = raw.get("kind")
    if kind not in MEDIA_KINDS:
        problems.add("media.kind", "invalid_choice", f"kind must be one of {', '.join(MEDIA_KINDS)}")
        return None
    url, raw_id = raw.get("url"), raw.get("attachment_id")
    if (url is None) == (raw_id is None):
        problems.add("media", "invalid", "give url or attachment_id")
        return None
    filename = raw.get("filename")
    if filename is not None and (problem := filename_problem(filename)):
        problems.add("media.filename", "invalid", f"filename {problem}")
        return None
    if url is not None:
        problem = media_url_problem(url) if isinstance(url, str) else "url must be a string"
        if problem:
            problems.add("media.url", "invalid_url", problem)
            return None
        return MediaSpec(kind, url, None, filename)
    try:
        return MediaSpec(kind, None, uuid.UUID(str(raw_id)), filename)
    except ValueError:
        problems.add("media.attachment_id", "invalid", "must be the id POST /api/v1/attachments gave")
        return None
