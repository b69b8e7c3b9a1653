"""The provider accounts a channel worker sends through: the channel's global account, and each site's own.

Each account has its own circuit breaker and rate limit, so one site's revoked key or exhausted plan holds only
that account's messages, never the others'. A site's key is read (sealed) from ``provider_accounts`` and cached
for ``ttl_s`` (30 s): a changed key reaches the worker within that time. Accounts are keyed by the key's fingerprint,
so two sites sharing one provider account share its limits too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lib.adapters.providers import DeliveryError, Provider
from lib.adapters.sealing import SealedSecretUnreadable, Sealer
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker
from lib.common.settings import Secret
from lib.domain.notification import OutgoingMessage


@dataclass
class Account:
    provider: Provider
    breaker: CircuitBreaker
    limiter: TokenBucket | None
    own: bool = False  # a site's own account (False: the channel's global one)


class UnreadableAccount:
    """Stands in for a site's account whose key this worker cannot open: each message through it fails, with
    the reason, instead of going out through another account."""

    name = "unreadable"

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def send(self, message: OutgoingMessage) -> str:
        raise DeliveryError(self._reason, code="provider_account_unreadable", temporary=False)

    async def aclose(self) -> None:
        return None


# The sealed key and fingerprint of a site's account on the worker's channel, or None.
FindKey = Callable[[str], Awaitable[dict[str, Any] | None]]


class Accounts:
    def __init__(
        self,
        find_key: FindKey,
        sealer: Sealer | None,
        connect: Callable[[Secret], Provider],
        new_account: Callable[[Provider], Account],
        *,
        ttl_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find_key = find_key
        self._sealer = sealer
        self._connect = connect
        self._new_account = new_account
        self._ttl_s = ttl_s
        self._clock = clock
        self._fingerprint_of: dict[str, tuple[str | None, float]] = {}  # site id -> (fingerprint, until)
        self._by_fingerprint: dict[str, Account] = {}

    async def for_site(self, site_id: str) -> Account | None:
        """The site's own account, or None for the channel's global one."""
        now = self._clock()
        known = self._fingerprint_of.get(site_id)
        if known is not None and known[1] > now:
            return self._by_fingerprint.get(known[0]) if known[0] else None
        row = await self._find_key(site_id)
        if row is None:
            self._fingerprint_of[site_id] = (None, now + self._ttl_s)
            return None
        fingerprint: str = row["key_fingerprint"]
        self._fingerprint_of[site_id] = (fingerprint, now + self._ttl_s)
        if fingerprint not in self._by_fingerprint:
            self._by_fingerprint[fingerprint] = self._open(row["sealed_key"])
        return self._by_fingerprint[fingerprint]

    def _open(self, sealed_key: str) -> Account:
        if self._sealer is None:
            reason = "the site has its own provider key and this worker has no NOTIFY_KEY_ENCRYPTION_KEYS to open it"
            return self._new_account(UnreadableAccount(reason))
        try:
            api_key = self._sealer.open(sealed_key)
        except SealedSecretUnreadable:
            reason = "none of this worker's NOTIFY_KEY_ENCRYPTION_KEYS opens the site's provider key"
            return self._new_account(UnreadableAccount(reason))
        return self._new_account(self._connect(api_key))

    async def aclose(self) -> None:
        for account in self._by_fingerprint.values():
            await account.provider.aclose()
