"""Reading a site's own messages back: one by id, or a filtered, cursor-paginated list. Always within one site:
another site's message is a 404."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.adapters import db
from lib.domain.errors import NotFound, ValidationFailed
from lib.domain.notification import public_json
from lib.domain.validation import strict_int
from lib.domain.vocabulary import CHANNELS, MESSAGE_STATUSES
from lib.services.identity import SiteIdentity


def parse_message_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("no such message") from None


async def get_message(pool: db.Pool, site: SiteIdentity, message_id: uuid.UUID) -> dict[str, Any]:
    row = await db.fetch_one(pool, "message_for_site", {"id": message_id, "site_id": site.site_id})
    if row is None:
        raise NotFound("no such message")
    return public_json(row)


def encode_cursor(row: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row['created_at'].isoformat()}|{row['id']}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed(
            "cursor is not valid",
            details=[{"field": "cursor", "code": "invalid", "message": "use next_cursor from a previous page"}],
        ) from None


@dataclass(frozen=True)
class ListFilters:
    status: str | None = None
    channel: str | None = None
    since: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def parse_list_filters(params: dict[str, str]) -> ListFilters:
    problems = []
    unknown = set(params) - {"status", "channel", "since", "limit", "cursor"}
    problems += [
        {"field": u, "code": "unknown_parameter", "message": f"unknown parameter {u!r}"} for u in sorted(unknown)
    ]
    status = params.get("status")
    if status is not None and status not in MESSAGE_STATUSES:
        problems.append(
            {
                "field": "status",
                "code": "invalid_choice",
                "message": f"status must be one of {', '.join(MESSAGE_STATUSES)}",
            }
        )
    channel = params.get("channel")
    if channel is not None and channel not in CHANNELS:
        problems.append(
            {"field": "channel", "code": "invalid_choice", "message": f"channel must be one of {', '.join(CHANNELS)}"}
        )
    since = None
    if "since" in params:
        try:
            since = datetime.fromisoformat(params["since"])
            if since.tzinfo is None:
                raise ValueError
        except ValueError:
            problems.append(
                {"field": "since", "code": "invalid", "message": "since must be an ISO 8601 timestamp with a time zone"}
            )
    limit = strict_int(params.get("limit", "50"))
    if limit is None or not 1 <= limit <= 200:
        problems.append({"field": "limit", "code": "invalid", "message": "limit must be an integer from 1 to 200"})
    if problems:
        raise ValidationFailed("invalid query parameters", details=problems)
    assert limit is not None
    return ListFilters(status, channel, since, limit, params.get("cursor"))


async def list_messages(pool: db.Pool, site: SiteIdentity, filters: ListFilters) -> dict[str, Any]:
    cursor_at, cursor_id = decode_cursor(filters.cursor) if filters.cursor is not None else (None, None)
    params = {
        "site_id": site.site_id,
        "status": filters.status,
        "channel": filters.channel,
        "since": filters.since,
        "cursor_created_at": cursor_at,
        "cursor_id": cursor_id,
        "limit": filters.limit + 1,
    }
    rows = await db.fetch_all(pool, "list_messages_for_site", params)
    page = rows[: filters.limit]
    return {
        "items": [public_json(r) for r in page],
        "next_cursor": encode_cursor(page[-1]) if len(rows) > filters.limit else None,
    }


async def timeline(pool: db.Pool, site: SiteIdentity, message_id: uuid.UUID) -> dict[str, Any]:
    """A message's story, oldest first: accepted (and scheduled), each failed attempt with its error, sent, and
    each provider event with its time and reason. Another site's message is a 404."""
    row = await db.fetch_one(pool, "message_history_for_site", {"id": message_id, "site_id": site.site_id})
    if row is None:
        raise NotFound("no such message")
    entries: list[dict[str, Any]] = [{"at": row["created_at"].isoformat(), "event": "accepted"}]
    if row["send_at"] is not None:
        entries.append({"at": row["send_at"].isoformat(), "event": "due"})
    for attempt in row["attempt_errors"] or []:
        entries.append(
            {
                "at": attempt.get("at"),
                "event": attempt.get("event", "attempt_failed"),
                "attempt": attempt.get("attempt"),
                "reason": attempt.get("error"),
                "code": attempt.get("code"),
            }
        )
    if row["sent_at"] is not None:
        entries.append(
            {"at": row["sent_at"].isoformat(), "event": "sent", "provider_message_id": row["provider_message_id"]}
        )
    params = {"id": message_id, "provider_message_id": row["provider_message_id"]}
    for event in await db.fetch_all(pool, "provider_events_of_message", params):
        entries.append(
            {
                "at": event["occurred_at"].isoformat(),
                "event": event["event"],
                "provider": event["provider"],
                "reason": event["reason"],
                **({"bounce_type": event["bounce_type"]} if event["bounce_type"] else {}),
            }
        )
    entries.sort(key=lambda e: str(e["at"] or ""))
    return {"message_id": str(message_id), "status": row["status"], "events": entries}
