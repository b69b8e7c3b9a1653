"""Scheduled sends: a message stored SCHEDULED is published when its ``send_at`` comes; until it is handed to a
worker, its site may cancel it.

Every API replica runs the scheduler. Each due row is taken by one of them (``take_due_scheduled``: the status
moves to PENDING under ``FOR UPDATE SKIP LOCKED``), then published; a replica that dies between the two leaves
PENDING rows, which the stuck-PENDING sweep publishes (``lib.services.sweeper``). So a scheduled message is
published once, and at worst once more by the sweep, which a worker's claim makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Histogram

from lib.adapters import db
from lib.adapters.kafka import Publisher
from lib.common.settings import KafkaSettings
from lib.domain.errors import Conflict, NotFound, NotifyError
from lib.domain.notification import public_json
from lib.services.accepting import publish_rows
from lib.services.identity import SiteIdentity

log = logging.getLogger(__name__)

PUBLISHED = Counter("notify_scheduled_published_total", "Scheduled messages published when due")
LATENESS = Histogram(
    "notify_scheduled_lateness_seconds",
    "How long after its send_at a scheduled message was published",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300),
)
CANCELLED = Counter("notify_messages_cancelled_total", "Messages cancelled by their site", ["channel"])
DUE_PER_TAKE = 500


async def publish_due(pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, *, limit: int = DUE_PER_TAKE) -> int:
    """Take up to ``limit`` due messages and publish them; return how many."""
    rows = await db.fetch_all(pool, "take_due_scheduled", {"limit": limit})
    if rows:
        await publish_rows(publisher, kafka, rows)
        now = datetime.now(UTC)
        for row in rows:
            LATENESS.observe(max(0.0, (now - row["send_at"]).total_seconds()))
        PUBLISHED.inc(len(rows))
    return len(rows)


async def run_scheduler(pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, *, interval_s: float) -> None:
    """Publish what is due every ``interval_s`` until cancelled; a backlog (after an outage) goes out at once."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            while await publish_due(pool, publisher, kafka) == DUE_PER_TAKE:
                pass
        except NotifyError as exc:  # the taken rows are PENDING: the stuck-PENDING sweep publishes them
            log.warning("publishing due scheduled messages failed", extra={"error": exc.message})


async def cancel(pool: db.Pool, site: SiteIdentity, message_id: uuid.UUID) -> dict[str, Any]:
    """Cancel one of the site's messages that no worker has taken yet (SCHEDULED or PENDING); its public JSON.
    Another site's message is a 404; one already taken, sent or final is a 409 naming its status."""
    row = await db.fetch_one(pool, "cancel_message", {"id": message_id, "site_id": site.site_id})
    if row is not None:
        CANCELLED.labels(row["channel"]).inc()
        return public_json(row)
    current = await db.fetch_one(pool, "message_for_site", {"id": message_id, "site_id": site.site_id})
    if current is None:
        raise NotFound("no such message")
    status = current["status"]
    raise Conflict(
        f"the message is {status} and can no longer be cancelled",
        code="not_cancellable",
        details=[{"field": "status", "code": status, "message": "only SCHEDULED or PENDING messages can be cancelled"}],
    )
