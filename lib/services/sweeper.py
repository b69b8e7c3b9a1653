"""The stuck-PENDING sweeper: a process that died between a message's insert and its publish left a PENDING row;
such rows are published again after a threshold (a worker's claim makes a duplicate record harmless)."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from lib.adapters import db
from lib.adapters.kafka import Publisher
from lib.common.settings import KafkaSettings
from lib.domain.errors import NotifyError
from lib.services.accepting import publish_rows

log = logging.getLogger(__name__)
REPUBLISHED = Counter("notify_messages_republished_total", "Stuck PENDING messages published again")


async def republish_stuck(
    pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, *, older_than_s: float, limit: int = 500
) -> int:
    """Publish again the rows left PENDING longer than ``older_than_s``; return how many."""
    rows = await db.fetch_all(pool, "claim_stuck_pending", {"older_than_s": older_than_s, "limit": limit})
    if rows:
        await publish_rows(publisher, kafka, rows)
        REPUBLISHED.inc(len(rows))
        log.warning("republished stuck pending messages", extra={"count": len(rows)})
    return len(rows)


async def sweep_stuck_pending(pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, *, after_s: float) -> None:
    """Run ``republish_stuck`` every half threshold (1 s to 60 s) until cancelled."""
    while True:
        await asyncio.sleep(min(60.0, max(1.0, after_s / 2)))
        try:
            await republish_stuck(pool, publisher, kafka, older_than_s=after_s)
        except NotifyError as exc:
            log.warning("stuck-pending sweep failed", extra={"error": exc.message})
