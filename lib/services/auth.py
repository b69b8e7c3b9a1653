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
  behind ``API_TRUSTED_PROXIES``), per lookup id, and per (lookup id, client). What they cost:
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
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol
from uuid import UUID

from prometheus_client import Counter

from lib.adapters import db
from lib.common.throttling import FailureWindows, InFlight, PriorityGate
from lib.domain import keys
from lib.domain.addresses import SenderPolicy
from lib.domain.errors import Forbidden, TooManyRequests, Unauthorized
from lib.domain.vocabulary import SiteStatus
from lib.services.identity import SiteIdentity
from lib.services.key_cache import KeyCache, KeyEntry, KnownLookupIds

log = logging.getLogger(__name__)

AUTH_CACHE = Counter("notify_auth_cache_total", "API key checks by cache result", ["result"])
_CACHE_RESULTS = {result: AUTH_CACHE.labels(result) for result in ("hit", "negative_hit", "stale", "miss")}
AUTH_BCRYPT = Counter("notify_auth_bcrypt_total", "bcrypt verifications by outcome", ["outcome"])
AUTH_FAILURES = Counter("notify_auth_failures_total", "Refused site authentications, by reason", ["reason"])
_FAILURE_REASONS = {
    reason: AUTH_FAILURES.labels(reason)
    for reason in ("missing", "malformed", "unknown_key_id", "wrong_secret", "throttled", "inactive_site")
}


def run_at_lowest_cpu_priority() -> None:
    """For the bcrypt threads: bcrypt burns a core by design; at nice 19 it gets the CPU only when the event loop,
    PostgreSQL and Kafka leave some, so wrong keys cannot slow valid traffic down (Linux: per-thread nice)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class SiteAuthenticator(Protocol):
    """What the API needs of a key checker (``Authenticator``; the benchmark's stand-in bypasses it)."""

    async def authenticate(self, presented: str | None, client: str = "") -> SiteIdentity: ...

    def forget_site(self, site_id: UUID) -> None: ...


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
        self._cache = KeyCache(max_entries)
        self._wrong = KeyCache(max(100, max_entries // 10))  # refusals: never in the verified keys' cache
        self._cache_ttl_s = cache_ttl_s
        self._negative_ttl_s = negative_ttl_s
        self.bcrypt_threads = ThreadPoolExecutor(
            bcrypt_concurrency, thread_name_prefix="bcrypt", initializer=run_at_lowest_cpu_priority
        )
        self._bcrypt_gate = PriorityGate(bcrypt_concurrency)
        self._in_flight: dict[bytes, asyncio.Future[SiteIdentity | None]] = {}
        self._suspects = InFlight[str]()  # suspect checks in flight, per client
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
                suspect = self._refuse_ifthrottled(key.lookup_id, client, now)
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
            with self._suspects.held(client) if suspect else contextlib.nullcontext():
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

    def _refuse_ifthrottled(self, lookup_id: str, client: str, now: float) -> bool:
        """429 for an attempt its own failures rule out; else whether it is suspect (queues behind clean ones)."""
        lookup_failures = self._by_lookup_id.count(lookup_id, now)
        if lookup_failures >= self._failure_limit and self._by_pair.count((lookup_id, client), now):
            self._failed(client, lookup_id, "throttled")
            raise throttled(
                "too many failed attempts with this key id; try again later", self._by_pair, (lookup_id, client), now
            )
        client_failures = self._by_client.count(client, now)
        # Past its limit, a client is refused on lookup ids with failures and on unknown ones (answered from the
        # set as it is, without waiting for a refresh); a lookup id nobody failed on still gets its bcrypt.
        if client_failures >= self._client_failure_limit and (lookup_failures or not self._known.has(lookup_id)):
            self._failed(client, lookup_id, "throttled")
            raise throttled(
                "too many failed key checks from this client; try again later", self._by_client, client, now
            )
        suspect = bool(lookup_failures or client_failures)
        if suspect and self._suspects.count(client) >= self._suspect_per_client:
            self._failed(client, lookup_id, "throttled")
            raise TooManyRequests("too many key checks in flight from this client", code="auth_rate_limited")
        return suspect

    async def _verify(
        self, key: keys.PresentedKey, verified: KeyEntry | None, client: str, suspect: bool
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
                    SenderPolicy.from_json(row["senders"]),
                    row["suppression_override"],
                )
        now = self._clock()
        if identity is None:
            self._cache.drop(key.digest)
            self._failed(client, key.lookup_id, "wrong_secret")
            self._wrong.put(KeyEntry(key.digest, None, now + self._negative_ttl_s))
        elif generation == self._generation:
            self._cache.put(KeyEntry(key.digest, identity, now + self._cache_ttl_s, row["key_hash"] if row else ""))
        return identity

    async def _bcrypt(self, key: keys.PresentedKey, key_hash: str, suspect: bool) -> bool:
        async with self._bcrypt_gate.held(priority=int(suspect)):
            ok = await asyncio.get_running_loop().run_in_executor(
                self.bcrypt_threads, keys.secret_matches, key.secret, key_hash
            )
        AUTH_BCRYPT.labels("match" if ok else "mismatch").inc()
        return ok

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


def throttled(message: str, windows: FailureWindows, key: Hashable, now: float) -> TooManyRequests:
    return TooManyRequests(message, code="auth_rate_limited", retry_after_s=windows.retry_after(key, now))
