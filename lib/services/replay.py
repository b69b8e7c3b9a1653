"""Re-enqueueing dead-lettered (FAILED) messages: same id, history kept, a "replayed" entry added."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lib.adapters import db
from lib.adapters.kafka import Publisher
from lib.common.settings import KafkaSettings
from lib.domain.errors import ValidationFailed
from lib.domain.notification import NotificationRecord
from lib.domain.vocabulary import CHANNELS
from lib.services.accepting import publish_or_mark_failed


@dataclass(frozen=True)
class ReplayFilter:
    message_id: uuid.UUID | None = None
    site_name: str | None = None
    since: datetime | None = None
    channel: str | None = None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        "the replay request is not valid", details=[{"field": field, "code": "invalid", "message": message}]
    )


def parse_replay_filter(data: Any) -> ReplayFilter:
    """At least one of message_id, site_name, since: "replay everything" is never an accident."""
    if not isinstance(data, dict):
        raise _invalid("", "expected an object")
    unknown = set(data) - {"message_id", "site_name", "since", "channel"}
    if unknown:
        raise _invalid(sorted(unknown)[0], "unknown field")
    if not any(data.get(k) for k in ("message_id", "site_name", "since")):
        raise _invalid("message_id", "give message_id, site_name or since")
    try:
        message_id = uuid.UUID(data["message_id"]) if data.get("message_id") else None
    except (ValueError, TypeError, AttributeError):
        raise _invalid("message_id", "must be a UUID") from None
    since = None
    if data.get("since"):
        try:
            since = datetime.fromisoformat(str(data["since"]))
        except ValueError:
            raise _invalid("since", "must be an ISO 8601 timestamp") from None
        if since.tzinfo is None:
            raise _invalid("since", "must carry a time zone")
    channel = data.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise _invalid("channel", f"must be one of {', '.join(CHANNELS)}")
    site_name = data.get("site_name")
    if site_name is not None and not isinstance(site_name, str):
        raise _invalid("site_name", "must be a string")
    return ReplayFilter(message_id, site_name, since, channel)


async def replay(pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, which: ReplayFilter) -> list[str]:
    """Move matching FAILED messages back to PENDING and publish them; return their ids.

    The rows are committed before the publish, so a worker never reads a record whose row still says FAILED;
    if Kafka refuses, they end FAILED with failure_code enqueue_failed, as a refused /send does.
    """
    site_id = None
    if which.site_name is not None:
        site = await db.fetch_one(pool, "site_by_name", {"site_name": which.site_name})
        if site is None:
            return []
        site_id = site["id"]
    params = {"id": which.message_id, "site_id": site_id, "since": which.since, "channel": which.channel}
    rows = await db.fetch_all(pool, "replay_failed", params)
    await publish_or_mark_failed(pool, publisher, kafka, [NotificationRecord.from_row(r) for r in rows])
    return [str(r["id"]) for r in rows]
