"""Provider events in: a verified webhook batch is stored (once per event) and acknowledged; the statuses are
applied off the request path, by every API replica in turn (``apply_pending``), so the route stays fast and a
burst of events never holds a request."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from uuid import UUID

from prometheus_client import Counter

from lib.adapters import db
from lib.domain.errors import NotifyError
from lib.domain.provider_events import ProviderEvent, event_status, settled_status

log = logging.getLogger(__name__)
EVENTS = Counter(
    "notify_provider_events_total", "Provider webhook events received, by provider and event", ["provider", "event"]
)
SETTLED = Counter("notify_provider_statuses_total", "Messages moved by provider events, by status", ["status"])
BATCH = 1000


async def store(pool: db.Pool, events: list[ProviderEvent]) -> None:
    rows = [
        {
            "provider": e.provider,
            "event_id": e.event_id,
            "message_id": str(e.message_id) if e.message_id else None,
            "provider_message_id": e.provider_message_id,
            "event": e.event,
            "reason": e.reason,
            "occurred_at": e.occurred_at.isoformat(),
            "payload": e.payload,
        }
        for e in events
    ]
    if rows:
        await db.execute(pool, "insert_provider_events", {"events": json.dumps(rows)})
    for e in events:
        EVENTS.labels(e.provider, e.event).inc()


async def apply_pending(pool: db.Pool, *, limit: int = BATCH) -> int:
    """Apply one batch of stored events; how many were taken. An event whose message is still on its way (not
    yet SENT) stays for a later pass."""
    async with db.unavailable_on_error(), pool.connection() as conn, conn.transaction():
        taken = await (await conn.execute(db.query("take_pending_provider_events"), {"limit": limit})).fetchall()
        if not taken:
            return 0
        ids = list({r["message_id"] for r in taken if r["message_id"] is not None})
        past = {
            r["id"] for r in await (await conn.execute(db.query("messages_past_delivery"), {"ids": ids})).fetchall()
        }
        by_message: dict[UUID, list[tuple[str, datetime, str | None]]] = {}
        for row in await (await conn.execute(db.query("status_events_of_messages"), {"ids": list(past)})).fetchall():
            status = event_status(row["event"], row["bounce_type"])
            if status is not None:
                by_message.setdefault(row["message_id"], []).append((status, row["occurred_at"], row["reason"]))
        for message_id, events in by_message.items():
            settled = settled_status(events)
            if settled is None:
                continue
            status, reason = settled
            params = {"id": message_id, "status": status, "reason": reason}
            if await (await conn.execute(db.query("settle_message_status"), params)).fetchone():
                SETTLED.labels(status).inc()
        done = [r["id"] for r in taken if r["message_id"] is None or r["message_id"] in past]
        await conn.execute(db.query("add_suppressions"), {"ids": done})
        await conn.execute(db.query("mark_provider_events_processed"), {"ids": done})
        return len(taken)


async def apply_continuously(pool: db.Pool, *, interval_s: float = 0.5) -> None:
    while True:
        try:
            while await apply_pending(pool) == BATCH:
                pass
        except NotifyError as exc:
            log.warning("applying provider events failed", extra={"error": exc.message})
        await asyncio.sleep(interval_s)
