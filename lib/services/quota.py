"""Per-site limits kept by each API process: the send quota and the key rotation rate.

The send quota (``rate_limit_per_minute``, optional) is charged once per message, after validation. A site's
bucket holds a minute's worth of messages and refills continuously. /send takes one message or gets 429. /bulk
is charged for its valid items only: it gets as many as the bucket holds, the rest of its items are rejected one
by one with ``rate_limited`` (each can be sent again later), and only a bulk that gets none at all is a 429. So
a bulk larger than the limit is never refused whole for being large.

Key rotations are bounded per site (``KEY_ROTATIONS_PER_HOUR``, with that many at once): each costs a bcrypt
hash and leaves a lookup id behind.

Bulk requests are bounded per site (``API_BULK_CONCURRENCY_PER_SITE`` at once): a 16 MiB bulk costs the API's one
event loop tens of milliseconds of parsing and encoding, so one site's flood of them must not take every turn of
it. The bound is checked before the body is read; a bulk beyond it is a 429 ``bulk_in_progress``.

Buckets and slots live in each API process: with N replicas a site gets up to N times its limits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from uuid import UUID

from lib.common.ratelimit import TokenBucket, TokenBuckets
from lib.common.throttling import InFlight
from lib.domain.errors import TooManyRequests
from lib.services.identity import SiteIdentity


def _limited(message: str, wait_s: float) -> TooManyRequests:
    return TooManyRequests(message, code="rate_limited", retry_after_s=int(wait_s) + 1)


class SiteQuotas:
    def __init__(self) -> None:
        self._buckets = TokenBuckets[UUID]()

    def _bucket(self, site: SiteIdentity) -> TokenBucket | None:
        limit = site.rate_limit_per_minute
        # Made afresh when the admin changes the limit.
        return None if limit is None else self._buckets.get(site.site_id, limit / 60.0, burst=limit)

    def take(self, site: SiteIdentity) -> None:
        """One message, or 429 with the seconds until there is room for one."""
        bucket = self._bucket(site)
        if bucket is not None and bucket.try_take():
            raise self.limited(site)

    def grant(self, site: SiteIdentity, wanted: int) -> int:
        """As many of ``wanted`` messages as the site may send now; 429 when it may send none."""
        bucket = self._bucket(site)
        if bucket is None or wanted == 0:
            return wanted
        granted = bucket.take_up_to(wanted)
        if not granted:
            raise self.limited(site)
        return granted

    def limited(self, site: SiteIdentity) -> TooManyRequests:
        """The site's quota refusal, with the seconds until there is room for one message."""
        bucket = self._bucket(site)
        return _limited(
            f"the site's limit of {site.rate_limit_per_minute} messages per minute is reached",
            bucket.wait_for() if bucket is not None else 0.0,
        )


class KeyRotations:
    def __init__(self, per_hour: int) -> None:
        self._per_hour = per_hour
        self._buckets = TokenBuckets[UUID]()

    def take(self, site: SiteIdentity) -> None:
        wait = self._buckets.get(site.site_id, self._per_hour / 3600.0, burst=self._per_hour).try_take()
        if wait:
            raise _limited(f"a site's key can be rotated at most {self._per_hour} times an hour", wait)


class BulkSlots:
    def __init__(self, per_site: int) -> None:
        self._per_site = per_site
        self._in_flight = InFlight[UUID]()

    @contextlib.contextmanager
    def held(self, site: SiteIdentity) -> Iterator[None]:
        """One of the site's bulk slots for the request's whole life, or 429 when all are taken."""
        if self._in_flight.count(site.site_id) >= self._per_site:
            raise TooManyRequests(
                f"at most {self._per_site} bulk requests of a site at a time; retry when one is answered",
                code="bulk_in_progress",
                retry_after_s=1,
            )
        with self._in_flight.held(site.site_id):
            yield
