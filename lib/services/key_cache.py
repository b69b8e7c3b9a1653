"""What the authenticator remembers between requests: verified and refused keys (by digest, bounded), and the
set of every key lookup id in the database."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from lib.adapters import db
from lib.services.identity import SiteIdentity


@dataclass
class KeyEntry:
    digest: bytes
    identity: SiteIdentity | None  # None: a remembered wrong key
    expires_at: float  # a right key: when to re-check its row; a wrong key: when to forget it
    key_hash: str = ""  # the stored hash this key was verified against


class KeyCache:
    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[bytes, KeyEntry] = OrderedDict()
        self._max = max_entries

    def get(self, digest: bytes) -> KeyEntry | None:
        entry = self._items.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry

    def put(self, entry: KeyEntry) -> None:
        self._items[entry.digest] = entry
        self._items.move_to_end(entry.digest)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def drop(self, digest: bytes) -> None:
        self._items.pop(digest, None)

    def drop_site(self, site_id: UUID) -> None:
        for digest in [d for d, e in self._items.items() if e.identity and e.identity.site_id == site_id]:
            del self._items[digest]


class KnownLookupIds:
    """Every key lookup id in the database, in memory, so a made-up one costs no query of its own.

    A lookup id missing from the set waits for a refresh that *started after it arrived* (one incremental
    query serves every such request; at most one every ``min_interval_s``). A key registered a moment ago
    by another API process is therefore found, a made-up one refused, and a flood of made-up ones costs a
    few queries a second instead of one each.
    """

    MARGIN = timedelta(minutes=1)

    def __init__(
        self, pool: db.Pool, *, min_interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._pool = pool
        self._ids: set[str] = set()
        self._watermark: datetime | None = None
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._task: asyncio.Future[None] | None = None
        self._task_started = float("-inf")
        self.refreshes = 0

    def has(self, lookup_id: str) -> bool:
        """Known as of the last refresh (no query)."""
        return lookup_id in self._ids

    async def contains(self, lookup_id: str) -> bool:
        if lookup_id in self._ids:
            return True
        arrived = self._clock()
        while True:
            task, started = self._task, self._task_started
            if task is not None and not task.done():
                await asyncio.shield(task)
                if started >= arrived:
                    break
                continue
            if task is not None and started >= arrived:
                task.result()  # finished after we arrived: it counts (and its error is ours)
                break
            wait = started + self._min_interval_s - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._task_started = self._clock()
            self._task = asyncio.ensure_future(self._refresh())
        return lookup_id in self._ids

    async def _refresh(self) -> None:
        self.refreshes += 1
        since = self._watermark - self.MARGIN if self._watermark else datetime(1970, 1, 1, tzinfo=UTC)
        for row in await db.fetch_all(self._pool, "key_lookup_ids_since", {"since": since}):
            self._ids.add(row["key_lookup_id"])
            if self._watermark is None or row["key_created_at"] > self._watermark:
                self._watermark = row["key_created_at"]
