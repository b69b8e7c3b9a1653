"""Authenticating sites by API key, cheaply, and so that no party's failures cost another party its access.

- One indexed row per key (its lookup id), never a bcrypt per registered site.
- Verified keys are cached in-process: a steady stream of requests costs a sha256 and a dict lookup. After
  ``cache_ttl_s`` an entry is re-checked against its row (same stored hash? still active?) with one indexed
  query and no bcrypt. That TTL bounds how long a rotated or suspended key keeps working in *other*
  processes; the process that rotates or suspends forgets the site at once, and a check that was in flight
  meanwhile is not cached (``_generation``).
- bcrypt runs in one thread at the lowest CPU priority, so it never blocks the event loop and never takes CPU
  that valid traffic wants; concurrent requests with the same uncached key share one verification.
- Made-up lookup ids are refused from an in-memory set of every lookup id (``KnownLookupIds``) and never cached,
  so they cost no query each and push nothing out. Wrong secrets for real lookup ids are remembered for
  ``negative_ttl_s`` in a cache of their own, so no refusal ever evicts a verified key.
- Failures are counted where they aim, never in one global budget: per client (the address as the API sees it,
  see ``lib.clients``), per lookup id, and per (lookup id, client). What they cost:
  * A lookup id with no recent failures always gets its bcrypt, whoever asks: one site's first request after
    a restart never waits for another's attacker.
  * A client past ``client_failure_limit`` in the window gets 429 for unknown lookup ids and for lookup ids that
    have failures (it may still try a lookup id nobody failed on: its own site's, behind a shared address).
  * A lookup id past ``failure_limit`` is locked for the clients that failed on it; others still get their
    bcrypt, so the owner's right key passes while its guessers wait. (An owner behind the very address of its
    attacker waits too: notify cannot tell them apart without the bcrypt it is refusing.)
  * A throttled attempt is answered after ``throttle_delay_s``: a client that keeps failing is slowed to its
    connections' count per delay, rather than costing the event loop at whatever rate it sends.
  * Verifications of suspect attempts (a client or lookup id with failures) queue behind clean ones, at most
    ``suspect_per_client`` of them per client at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

from prometheus_client import Counter

from lib.adapters import db
from lib.common.settings import Secret
from lib.domain import keys
from lib.domain.errors import Forbidden, TooManyRequests, Unauthorized
from lib.domain.vocabulary import SiteStatus

log = logging.getLogger(__name__)

AUTH_CACHE = Counter("notify_auth_cache_total", "API key checks by cache result", ["result"])
_CACHE_RESULTS = {result: AUTH_CACHE.labels(result) for result in ("hit", "negative_hit", "stale", "miss")}
AUTH_BCRYPT = Counter("notify_auth_bcrypt_total", "bcrypt verifications by outcome", ["outcome"])
AUTH_FAILURES = Counter("notify_auth_failures_total", "Refused site authentications, by reason", ["reason"])
_FAILURE_REASONS = {
    reason: AUTH_FAILURES.labels(reason)
    for reason in ("missing", "malformed", "unknown_key_id", "wrong_secret", "throttled", "inactive_site")
}
ADMIN_AUTH_FAILURES = Counter(
    "notify_admin_auth_failures_total", "Refused admin authentications, by reason", ["reason"]
)
_ADMIN_FAILURES = {reason: ADMIN_AUTH_FAILURES.labels(reason) for reason in ("missing", "wrong_token", "throttled")}


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


def run_at_lowest_cpu_priority() -> None:
    """For the bcrypt threads: bcrypt burns a core by design; at nice 19 it gets the CPU only when the event loop,
    PostgreSQL and Kafka leave some, so wrong keys cannot slow valid traffic down (Linux: per-thread nice)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class SiteAuthenticator(Protocol):
    """What the API needs of a key checker (``Authenticator``; the benchmark's stand-in bypasses it)."""

    async def authenticate(self, presented: str | None, client: str = "") -> SiteIdentity: ...

    def forget_site(self, site_id: UUID) -> None: ...


class FailureWindows:
    """Failures per key in a fixed window (the first failure opens it), for at most ``max_keys`` keys."""

    def __init__(self, window_s: float, max_keys: int = 10_000) -> None:
        self._windows: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()
        self._window_s = window_s
        self._max_keys = max_keys

    def count(self, key: Hashable, now: float) -> int:
        window = self._windows.get(key)
        return window[1] if window and now - window[0] < self._window_s else 0

    def add(self, key: Hashable, now: float) -> int:
        """Count one failure; the count in the window, this one included."""
        started, count = self._windows.get(key, (now, 0))
        if now - started >= self._window_s:
            started, count = now, 0
        self._windows[key] = (started, count + 1)
        self._windows.move_to_end(key)
        while len(self._windows) > self._max_keys:
            self._windows.popitem(last=False)
        return count + 1

    def retry_after(self, key: Hashable, now: float) -> int:
        started = self._windows.get(key, (now, 0))[0]
        return int(self._window_s - (now - started)) + 1


class _PriorityGate:
    """``slots`` holders at a time; waiters of a lower ``priority`` number are let in first."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def held(self, priority: int) -> AsyncIterator[None]:
        if self._free and not self._waiting:
            self._free -= 1
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (priority, next(self._order), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # let in, then cancelled: pass the slot on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            turn = heapq.heappop(self._waiting)[2]
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1


class Authenticator:
    def __init__(
        self,
        pool: db.Pool,
        *,
        cache_ttl_s: float = 30.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 10_000,
        bcrypt_concurrency: int = 1,
        failure_limit: int = 10,
        client_failure_limit: int = 20,
        failure_window_s: float = 60.0,
        suspect_per_client: int = 2,
        throttle_delay_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache = _BoundedCache(max_entries)
        self._wrong = _BoundedCache(max(100, max_entries // 10))  # refusals: never in the verified keys' cache
        self._cache_ttl_s = cache_ttl_s
        self._negative_ttl_s = negative_ttl_s
        self.bcrypt_threads = ThreadPoolExecutor(
            bcrypt_concurrency, thread_name_prefix="bcrypt", initializer=run_at_lowest_cpu_priority
        )
        self._bcrypt_gate = _PriorityGate(bcrypt_concurrency)
        self._in_flight: dict[bytes, asyncio.Future[SiteIdentity | None]] = {}
        self._suspect_in_flight: dict[str, int] = {}
        self._suspect_per_client = suspect_per_client
        self._throttle_delay_s = throttle_delay_s
        self._failure_limit = failure_limit
        self._client_failure_limit = client_failure_limit
        self._by_lookup_id = FailureWindows(failure_window_s, max_entries)
        self._by_client = FailureWindows(failure_window_s, max_entries)
        self._by_pair = FailureWindows(failure_window_s, max_entries)
        self._generation = 0  # bumped whenever a site is forgotten: a check that overlapped it is not cached
        self._clock = clock
        self._known = KnownLookupIds(pool, clock=clock)

    async def authenticate(self, presented: str | None, client: str = "") -> SiteIdentity:
        """The site of a presented key, as seen from ``client`` (its address); else 401, 403 or 429."""
        try:
            key = keys.parse_key(presented)
        except Unauthorized as exc:
            self._failed(client, None, "missing" if exc.code == "missing_api_key" else "malformed")
            raise
        now = self._clock()
        entry = self._cache.get(key.digest)
        if entry is not None and entry.expires_at > now:
            _CACHE_RESULTS["hit"].inc()
            return self._admit(entry.identity, client, key.lookup_id)
        wrong = self._wrong.get(key.digest)
        if wrong is not None and wrong.expires_at > now:
            _CACHE_RESULTS["negative_hit"].inc()
            self._failed(client, key.lookup_id, "wrong_secret")
            raise _invalid()
        verified = entry if entry is not None and entry.identity is not None else None
        _CACHE_RESULTS["stale" if verified else "miss"].inc()
        suspect = False
        if verified is None:  # a key not verified here: it needs a bcrypt, unless its failures say no first
            try:
                suspect = self._refuse_if_throttled(key.lookup_id, client, now)
            except TooManyRequests:
                # Answered late: a client that keeps failing is slowed to its connections' count per delay,
                # instead of taking the event loop's time at whatever rate it sends (a wait costs no CPU).
                await asyncio.sleep(self._throttle_delay_s)
                raise
            if not await self._known.contains(key.lookup_id):
                self._failed(client, key.lookup_id, "unknown_key_id")
                raise _invalid()
        shared = self._in_flight.get(key.digest)
        if shared is not None:
            return self._admit(await asyncio.shield(shared), client, key.lookup_id)
        future: asyncio.Future[SiteIdentity | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key.digest] = future
        try:
            with self._suspect_slot(client, suspect):
                identity = await self._verify(key, verified, client, suspect)
            future.set_result(identity)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a future nobody else awaited does not warn
            raise
        finally:
            del self._in_flight[key.digest]
        return self._admit(identity, client, key.lookup_id)

    def forget_site(self, site_id: UUID) -> None:
        """Called after this process rotated or changed a site: its cached keys go at once."""
        self._generation += 1
        self._cache.drop_site(site_id)

    def _refuse_if_throttled(self, lookup_id: str, client: str, now: float) -> bool:
        """429 for an attempt its own failures rule out; else whether it is suspect (queues behind clean ones)."""
        lookup_failures = self._by_lookup_id.count(lookup_id, now)
        if lookup_failures >= self._failure_limit and self._by_pair.count((lookup_id, client), now):
            self._failed(client, lookup_id, "throttled")
            raise _throttled(
                "too many failed attempts with this key id; try again later", self._by_pair, (lookup_id, client), now
            )
        client_failures = self._by_client.count(client, now)
        # Past its limit, a client is refused on lookup ids with failures and on unknown ones (answered from the
        # set as it is, without waiting for a refresh); a lookup id nobody failed on still gets its bcrypt.
        if client_failures >= self._client_failure_limit and (lookup_failures or not self._known.has(lookup_id)):
            self._failed(client, lookup_id, "throttled")
            raise _throttled(
                "too many failed key checks from this client; try again later", self._by_client, client, now
            )
        suspect = bool(lookup_failures or client_failures)
        if suspect and self._suspect_in_flight.get(client, 0) >= self._suspect_per_client:
            self._failed(client, lookup_id, "throttled")
            raise TooManyRequests("too many key checks in flight from this client", code="auth_rate_limited")
        return suspect

    async def _verify(
        self, key: keys.PresentedKey, verified: _Entry | None, client: str, suspect: bool
    ) -> SiteIdentity | None:
        """Check the key against its row: by bcrypt, or, for a key verified before, by the stored hash alone."""
        generation = self._generation
        row = await db.fetch_one(self._pool, "site_credentials_by_lookup_id", {"key_lookup_id": key.lookup_id})
        identity: SiteIdentity | None = None
        if row is not None:
            if verified is not None and hmac.compare_digest(verified.key_hash.encode(), row["key_hash"].encode()):
                ok = True  # the same stored hash this very key matched before: no bcrypt needed
            else:
                ok = await self._bcrypt(key, row["key_hash"], suspect)
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
            self._failed(client, key.lookup_id, "wrong_secret")
            self._wrong.put(_Entry(key.digest, None, now + self._negative_ttl_s))
        elif generation == self._generation:
            self._cache.put(_Entry(key.digest, identity, now + self._cache_ttl_s, row["key_hash"] if row else ""))
        return identity

    async def _bcrypt(self, key: keys.PresentedKey, key_hash: str, suspect: bool) -> bool:
        async with self._bcrypt_gate.held(priority=int(suspect)):
            ok = await asyncio.get_running_loop().run_in_executor(
                self.bcrypt_threads, keys.secret_matches, key.secret, key_hash
            )
        AUTH_BCRYPT.labels("match" if ok else "mismatch").inc()
        return ok

    @contextlib.contextmanager
    def _suspect_slot(self, client: str, suspect: bool) -> Iterator[None]:
        """Counts a suspect client's checks in flight (see ``suspect_per_client``)."""
        if suspect:
            self._suspect_in_flight[client] = self._suspect_in_flight.get(client, 0) + 1
        try:
            yield
        finally:
            if suspect:
                left = self._suspect_in_flight.pop(client) - 1
                if left:
                    self._suspect_in_flight[client] = left

    def _failed(self, client: str, lookup_id: str | None, reason: str) -> None:
        """Count a refusal where it aimed, and let an operator see it: the first of a client's window and the one
        that crosses its limit are logged (never any key material beyond the public lookup id)."""
        _FAILURE_REASONS[reason].inc()
        if reason == "throttled":
            return
        now = self._clock()
        count = self._by_client.add(client, now)
        if lookup_id is not None:
            self._by_lookup_id.add(lookup_id, now)
            self._by_pair.add((lookup_id, client), now)
        if count in (1, self._client_failure_limit):
            log.warning(
                "site authentication refused",
                extra={"reason": reason, "lookup_id": lookup_id, "client": client, "failures_in_window": count},
            )

    def _admit(self, identity: SiteIdentity | None, client: str, lookup_id: str) -> SiteIdentity:
        if identity is None:
            raise _invalid()
        if identity.status != SiteStatus.ACTIVE:
            _FAILURE_REASONS["inactive_site"].inc()
            raise Forbidden(f"the site is {identity.status}", code="site_suspended")
        return identity


def _invalid() -> Unauthorized:
    return Unauthorized("the API key is not valid", code="invalid_api_key")


def _throttled(message: str, windows: FailureWindows, key: Hashable, now: float) -> TooManyRequests:
    return TooManyRequests(message, code="auth_rate_limited", retry_after_s=windows.retry_after(key, now))


class AdminGate:
    """The admin token check, throttled per client: past ``failure_limit`` failures in the window every attempt
    from that client is refused unchecked (answering a right token then would tell a guesser it found it)."""

    def __init__(
        self,
        token: Secret,
        *,
        failure_limit: int = 10,
        failure_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = token
        self._failures = FailureWindows(failure_window_s)
        self._failure_limit = failure_limit
        self._clock = clock

    def check(self, authorization: str | None, client: str = "") -> None:
        now = self._clock()
        if self._failures.count(client, now) >= self._failure_limit:
            _ADMIN_FAILURES["throttled"].inc()
            raise _throttled("too many failed admin token checks from this client", self._failures, client, now)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            self._failed(client, "missing")
            raise Unauthorized("admin routes need Authorization: Bearer <admin token>", code="admin_token_required")
        if not hmac.compare_digest(token.strip().encode(), self._token.reveal().encode()):
            self._failed(client, "wrong_token")
            raise Unauthorized("the admin token is not valid", code="invalid_admin_token")

    def _failed(self, client: str, reason: str) -> None:
        _ADMIN_FAILURES[reason].inc()
        count = self._failures.add(client, self._clock())
        if count in (1, self._failure_limit):
            log.warning(
                "admin authentication refused", extra={"reason": reason, "client": client, "failures_in_window": count}
            )
