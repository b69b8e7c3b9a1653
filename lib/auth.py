"""Authenticating sites by API key, cheaply and without letting wrong keys starve the right ones.

- One indexed row per key (its lookup id), never a bcrypt per registered site.
- Verified keys are cached in-process: a steady stream of requests costs a sha256 and a dict lookup. After
  ``cache_ttl_s`` an entry is re-checked against its row (same stored hash? still active?) with one indexed
  query and no bcrypt. That TTL bounds how long a rotated or suspended key keeps working in *other*
  processes; the process that rotates or suspends forgets the site at once.
- bcrypt runs in a worker thread behind a semaphore, so it never blocks the event loop and never takes
  every core; concurrent requests with the same uncached key share one verification.
- Made-up lookup ids are refused from an in-memory set of every lookup id (``KnownLookupIds``), so they
  cost no query each. Wrong keys are remembered for ``negative_ttl_s``; a lookup id with more than
  ``failure_limit`` failures in ``failure_window_s`` gets 429 without any bcrypt until the window ends
  (cached right keys still pass).
- bcrypt itself has a budget (``bcrypt_per_s``, with a small burst): a verification takes a token and a
  match gives it back, so right keys never run it down while a flood of wrong keys gets 429 instead of CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prometheus_client import Counter

from lib import db, keys
from lib.errors import Forbidden, TooManyRequests, Unauthorized
from lib.ratelimit import TokenBucket

AUTH_CACHE = Counter("notify_auth_cache_total", "API key checks by cache result", ["result"])
_CACHE_RESULTS = {result: AUTH_CACHE.labels(result) for result in ("hit", "negative_hit", "stale", "miss")}
AUTH_BCRYPT = Counter("notify_auth_bcrypt_total", "bcrypt verifications by outcome", ["outcome"])


@dataclass(frozen=True)
class SiteIdentity:
    site_id: UUID
    site_name: str
    status: str
    enabled_channels: tuple[str, ...]
    rate_limit_per_minute: int | None


@dataclass
class _Entry:
    digest: bytes
    identity: SiteIdentity | None  # None: a remembered wrong key
    expires_at: float  # a right key: when to re-check its row; a wrong key: when to forget it
    key_hash: str = ""  # the stored hash this key was verified against


class _BoundedCache:
    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[bytes, _Entry] = OrderedDict()
        self._max = max_entries

    def get(self, digest: bytes) -> _Entry | None:
        entry = self._items.get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            return None
        return entry

    def put(self, entry: _Entry) -> None:
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

    def __init__(self, pool: Any, *, min_interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._ids: set[str] = set()
        self._watermark: datetime | None = None
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._task: asyncio.Future[None] | None = None
        self._task_started = float("-inf")
        self.refreshes = 0

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
        async with db.unavailable_on_error(), self._pool.connection() as conn:
            rows = await (await conn.execute(db.query("key_lookup_ids_since"), {"since": since})).fetchall()
        for row in rows:
            self._ids.add(row["key_lookup_id"])
            if self._watermark is None or row["key_created_at"] > self._watermark:
                self._watermark = row["key_created_at"]


def run_at_lowest_cpu_priority() -> None:
    """For the bcrypt threads: bcrypt burns a core by design; at nice 19 it gets the CPU only when the event loop,
    PostgreSQL and Kafka leave some, so wrong keys cannot slow valid traffic down (Linux: per-thread nice)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class Authenticator:
    def __init__(
        self,
        pool: Any,
        *,
        cache_ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        bcrypt_concurrency: int = 1,
        failure_limit: int = 10,
        failure_window_s: float = 60.0,
        bcrypt_per_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache = _BoundedCache(max_entries)
        self._cache_ttl_s = cache_ttl_s
        self._negative_ttl_s = negative_ttl_s
        self.bcrypt_threads = ThreadPoolExecutor(
            bcrypt_concurrency, thread_name_prefix="bcrypt", initializer=run_at_lowest_cpu_priority
        )
        self._in_flight: dict[bytes, asyncio.Future[SiteIdentity | None]] = {}
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._failure_limit = failure_limit
        self._failure_window_s = failure_window_s
        self._max_entries = max_entries
        self._clock = clock
        self._known = KnownLookupIds(pool, clock=clock)
        self._bcrypt_budget = TokenBucket(bcrypt_per_s, burst=max(2.0, 4 * bcrypt_per_s), clock=clock)

    async def authenticate(self, presented: str | None) -> SiteIdentity:
        key = keys.parse_key(presented)
        now = self._clock()
        entry = self._cache.get(key.digest)
        if entry is not None and entry.expires_at > now:
            _CACHE_RESULTS["hit" if entry.identity else "negative_hit"].inc()
            return _admit(entry.identity)
        verified = entry if entry is not None and entry.identity is not None else None
        _CACHE_RESULTS["stale" if verified else "miss"].inc()
        if verified is None:
            self._refuse_if_throttled(key.lookup_id, now)
            if not await self._known.contains(key.lookup_id):
                self._cache.put(_Entry(key.digest, None, self._clock() + self._negative_ttl_s))
                raise Unauthorized("the API key is not valid", code="invalid_api_key")
            # A key never verified here needs a bcrypt: with the budget spent, refuse before any query.
            self._refuse_if_no_budget(self._bcrypt_budget.wait_for())
        shared = self._in_flight.get(key.digest)
        if shared is not None:
            return _admit(await asyncio.shield(shared))
        future: asyncio.Future[SiteIdentity | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key.digest] = future
        try:
            identity = await self._verify(key, verified)
            future.set_result(identity)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited does not warn
            raise
        finally:
            del self._in_flight[key.digest]
        return _admit(identity)

    def forget_site(self, site_id: UUID) -> None:
        """Called after this process rotated or changed a site: its cached keys go at once."""
        self._cache.drop_site(site_id)

    async def _verify(self, key: keys.PresentedKey, verified: _Entry | None) -> SiteIdentity | None:
        """Check the key against its row: by bcrypt, or, for a key verified before, by the stored hash alone."""
        async with db.unavailable_on_error(), self._pool.connection() as conn:
            cur = await conn.execute(db.query("site_credentials_by_lookup_id"), {"key_lookup_id": key.lookup_id})
            row = await cur.fetchone()
        identity: SiteIdentity | None = None
        if row is not None:
            if verified is not None and hmac.compare_digest(verified.key_hash.encode(), row["key_hash"].encode()):
                ok = True  # the same stored hash this very key matched before: no bcrypt needed
            else:
                ok = await self._bcrypt(key, row["key_hash"])
            if ok:
                identity = SiteIdentity(
                    row["id"],
                    row["site_name"],
                    row["status"],
                    tuple(row["enabled_channels"]),
                    row["rate_limit_per_minute"],
                )
        now = self._clock()
        if identity is None:
            self._cache.drop(key.digest)
            self._record_failure(key.lookup_id, now)
            self._cache.put(_Entry(key.digest, None, now + self._negative_ttl_s))
        else:
            self._cache.put(_Entry(key.digest, identity, now + self._cache_ttl_s, row["key_hash"] if row else ""))
        return identity

    def _refuse_if_no_budget(self, wait: float) -> None:
        if wait:
            AUTH_BCRYPT.labels("refused").inc()
            raise TooManyRequests(
                "too many key verifications; try again shortly", code="auth_rate_limited", retry_after_s=int(wait) + 1
            )

    async def _bcrypt(self, key: keys.PresentedKey, key_hash: str) -> bool:
        self._refuse_if_no_budget(self._bcrypt_budget.try_take())
        ok = await asyncio.get_running_loop().run_in_executor(
            self.bcrypt_threads, keys.secret_matches, key.secret, key_hash
        )
        AUTH_BCRYPT.labels("match" if ok else "mismatch").inc()
        if ok:
            self._bcrypt_budget.give_back()
        return ok

    def _refuse_if_throttled(self, lookup_id: str, now: float) -> None:
        window = self._failures.get(lookup_id)
        if window and now - window[0] < self._failure_window_s and window[1] >= self._failure_limit:
            retry_after = int(self._failure_window_s - (now - window[0])) + 1
            raise TooManyRequests(
                "too many failed attempts with this key id; try again later",
                code="auth_rate_limited",
                retry_after_s=retry_after,
            )

    def _record_failure(self, lookup_id: str, now: float) -> None:
        started, count = self._failures.get(lookup_id, (now, 0))
        if now - started >= self._failure_window_s:
            started, count = now, 0
        self._failures[lookup_id] = (started, count + 1)
        self._failures.move_to_end(lookup_id)
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)


def _admit(identity: SiteIdentity | None) -> SiteIdentity:
    if identity is None:
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    if identity.status != "active":
        raise Forbidden(f"the site is {identity.status}", code="site_suspended")
    return identity
