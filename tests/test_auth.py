"""Key checking against the real database: one row per key, caching, throttling of wrong keys."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lib.adapters import db
from lib.common.settings import DatabaseSettings, Secret
from lib.domain import keys
from lib.domain.errors import Forbidden, TooManyRequests, Unauthorized
from lib.services import sites
from lib.services.admin import AdminGate
from lib.services.auth import AUTH_BCRYPT, AUTH_CACHE, AUTH_FAILURES, Authenticator

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bcrypt_count(outcome: str) -> float:
    value: float = AUTH_BCRYPT.labels(outcome)._value.get()
    return value


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    async with db.create_pool(DatabaseSettings(url=Secret(pg_dsn)), name="test-auth") as opened:
        yield opened


async def new_site(pool: AsyncConnectionPool[Any]) -> dict:
    return await sites.register_site(pool, f"auth-{uuid.uuid4().hex[:8]}.example.com", None)


def test_keys_round_trip() -> None:
    issued = keys.issue_key(rounds=4)
    presented = keys.parse_key(issued.plain)
    assert presented.lookup_id == issued.lookup_id
    assert keys.secret_matches(presented.secret, issued.secret_hash)
    assert not keys.secret_matches(presented.secret + "x", issued.secret_hash)
    assert issued.secret_hash.startswith("$2b$04$") and presented.secret not in issued.secret_hash
    assert keys.hash_secret("s").startswith("$2b$12$")  # production rounds
    for bad in (None, "", "nfy_short", issued.plain.replace("nfy_", "xyz_"), issued.plain + "!"):
        with pytest.raises(Unauthorized):
            keys.parse_key(bad)


async def test_a_verified_key_is_cached_until_its_ttl(pool: AsyncConnectionPool[Any]) -> None:
    site = await new_site(pool)
    clock = Clock()
    auth = Authenticator(pool, cache_ttl_s=30, clock=clock)
    before = bcrypt_count("match")
    identities = await asyncio.gather(*(auth.authenticate(site["api_key"]) for _ in range(20)))
    assert {str(i.site_id) for i in identities} == {site["site_id"]}
    assert bcrypt_count("match") - before == 1  # concurrent first requests share one bcrypt
    clock.now += 29
    await auth.authenticate(site["api_key"])
    assert bcrypt_count("match") - before == 1
    clock.now += 2  # past the TTL: the row is read again, but the same stored hash needs no bcrypt
    stale_before = AUTH_CACHE.labels("stale")._value.get()
    await auth.authenticate(site["api_key"])
    assert AUTH_CACHE.labels("stale")._value.get() - stale_before == 1
    assert bcrypt_count("match") - before == 1


async def test_suspension_and_rotation_take_effect_within_the_ttl(pool: AsyncConnectionPool[Any]) -> None:
    site = await new_site(pool)
    clock = Clock()
    other_process = Authenticator(pool, cache_ttl_s=30, clock=clock)
    await other_process.authenticate(site["api_key"])
    await sites.update_site(pool, site["site_name"], sites.parse_site_changes({"status": "suspended"}))
    await other_process.authenticate(site["api_key"])  # still cached: the documented bound
    clock.now += 31
    with pytest.raises(Forbidden):
        await other_process.authenticate(site["api_key"])
    rotated = await sites.rotate_key(pool, uuid.UUID(site["site_id"]))
    await sites.update_site(pool, site["site_name"], sites.parse_site_changes({"status": "active"}))
    clock.now += 31
    with pytest.raises(Unauthorized):
        await other_process.authenticate(site["api_key"])
    assert str((await other_process.authenticate(rotated["api_key"])).site_id) == site["site_id"]


async def test_wrong_keys_are_remembered_and_throttled(pool: AsyncConnectionPool[Any]) -> None:
    site = await new_site(pool)
    lookup_id = keys.parse_key(site["api_key"]).lookup_id
    clock = Clock()
    auth = Authenticator(pool, negative_ttl_s=5, failure_limit=3, failure_window_s=60, clock=clock)
    await auth.authenticate(site["api_key"])  # the right key, cached
    before = bcrypt_count("mismatch")
    wrong = [f"nfy_{lookup_id}_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}" for _ in range(5)]
    for key in wrong[:3]:
        with pytest.raises(Unauthorized):
            await auth.authenticate(key)
    with pytest.raises(Unauthorized):  # a repeat of a remembered wrong key costs no bcrypt
        await auth.authenticate(wrong[0])
    assert bcrypt_count("mismatch") - before == 3
    with pytest.raises(TooManyRequests) as throttled:
        await auth.authenticate(wrong[3])
    assert throttled.value.code == "auth_rate_limited"
    assert bcrypt_count("mismatch") - before == 3
    await auth.authenticate(site["api_key"])  # the cached right key still passes
    clock.now += 61
    with pytest.raises(Unauthorized):
        await auth.authenticate(wrong[4])
    assert bcrypt_count("mismatch") - before == 4


async def test_unknown_lookup_ids_cost_no_bcrypt(pool: AsyncConnectionPool[Any]) -> None:
    auth = Authenticator(pool)
    before = bcrypt_count("mismatch") + bcrypt_count("match")
    for _ in range(5):
        with pytest.raises(Unauthorized):
            await auth.authenticate(keys.issue_key(rounds=4).plain)
    assert bcrypt_count("mismatch") + bcrypt_count("match") == before


def wrong_secrets(site: dict[str, Any], count: int) -> list[str]:
    lookup_id = keys.parse_key(site["api_key"]).lookup_id
    return [f"nfy_{lookup_id}_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}" for _ in range(count)]


async def fail(auth: Authenticator, key: str, client: str = "") -> str:
    """The error code an attempt gets (it must not pass)."""
    with pytest.raises((Unauthorized, TooManyRequests)) as refused:
        await auth.authenticate(key, client)
    return refused.value.code


async def test_wrong_secrets_for_one_site_never_refuse_another_sites_first_key(
    pool: AsyncConnectionPool[Any],
) -> None:
    """Issue 14 (2): two wrong secrets on A's lookup id spent a global bcrypt budget, and B's right key, on its
    first use, got 429. Failures now cost only what they aim at."""
    a, b = await new_site(pool), await new_site(pool)
    auth = Authenticator(pool, clock=Clock())
    for key in wrong_secrets(a, 12):  # past A's limit, from one client
        await fail(auth, key, "198.51.100.7")
    assert str((await auth.authenticate(b["api_key"], "198.51.100.7")).site_id) == b["site_id"]


async def test_a_locked_lookup_id_still_accepts_its_right_key_from_another_client(
    pool: AsyncConnectionPool[Any],
) -> None:
    site = await new_site(pool)
    clock = Clock()
    auth = Authenticator(pool, failure_limit=3, throttle_delay_s=0.3, clock=clock)
    wrong = wrong_secrets(site, 5)
    assert [await fail(auth, k, "attacker") for k in wrong[:3]] == ["invalid_api_key"] * 3
    before = bcrypt_count("mismatch")
    started = time.monotonic()
    assert await fail(auth, wrong[3], "attacker") == "auth_rate_limited"  # its guessing is slowed: no bcrypt
    assert bcrypt_count("mismatch") == before and time.monotonic() - started >= 0.3  # and answered late
    assert await fail(auth, site["api_key"], "attacker") == "auth_rate_limited"  # the very address waits too
    assert str((await auth.authenticate(site["api_key"], "owner")).site_id) == site["site_id"]
    assert await fail(auth, wrong[4], "another") == "invalid_api_key"  # one try for a client new to it
    clock.now += 61
    assert await fail(auth, wrong[4] + "", "attacker") == "invalid_api_key"  # the window is over


async def test_a_client_past_its_limit_is_throttled_but_a_clean_lookup_id_still_gets_its_bcrypt(
    pool: AsyncConnectionPool[Any],
) -> None:
    """A Frappe host's sites share one address: one site's failures must not lock its neighbours out."""
    failing, neighbour = await new_site(pool), await new_site(pool)
    auth = Authenticator(pool, failure_limit=100, client_failure_limit=4, clock=Clock())
    for key in [*wrong_secrets(failing, 2), keys.issue_key(rounds=4).plain, keys.issue_key(rounds=4).plain]:
        assert await fail(auth, key, "shared-host") == "invalid_api_key"
    assert await fail(auth, keys.issue_key(rounds=4).plain, "shared-host") == "auth_rate_limited"  # made up
    assert await fail(auth, wrong_secrets(failing, 1)[0], "shared-host") == "auth_rate_limited"
    assert await fail(auth, keys.issue_key(rounds=4).plain, "elsewhere") == "invalid_api_key"
    assert str((await auth.authenticate(neighbour["api_key"], "shared-host")).site_id) == neighbour["site_id"]


async def test_refusals_never_evict_verified_keys(pool: AsyncConnectionPool[Any]) -> None:
    """Issue 14 (3): 10,500 made-up keys pushed every verified key out of one shared LRU."""
    site, other = await new_site(pool), await new_site(pool)
    auth = Authenticator(pool, max_entries=20, failure_limit=1000, client_failure_limit=1000, clock=Clock())
    await auth.authenticate(site["api_key"])
    for i, key in enumerate([keys.issue_key(rounds=4).plain for _ in range(60)] + wrong_secrets(other, 30)):
        await fail(auth, key, f"client-{i}")
    hits = AUTH_CACHE.labels("hit")._value.get()
    matches = bcrypt_count("match")
    await auth.authenticate(site["api_key"])
    assert AUTH_CACHE.labels("hit")._value.get() - hits == 1 and bcrypt_count("match") == matches


async def test_suspect_checks_wait_behind_clean_ones(pool: AsyncConnectionPool[Any]) -> None:
    """One bcrypt thread: a client with failures cannot queue a wall of checks ahead of a site's first request."""
    target, owner = await new_site(pool), await new_site(pool)
    auth = Authenticator(pool, failure_limit=1000, client_failure_limit=1000, suspect_per_client=2, clock=Clock())
    wrong = wrong_secrets(target, 6)
    await fail(auth, wrong[0], "attacker")  # now a suspect client
    order: list[str] = []

    async def attempt(key: str, client: str, name: str) -> None:
        try:
            await auth.authenticate(key, client)
        except (Unauthorized, TooManyRequests) as exc:
            order.append(f"{name}:{exc.code}")
            return
        order.append(f"{name}:ok")

    first = asyncio.create_task(attempt(wrong[1], "attacker", "a1"))
    await asyncio.sleep(0.05)  # a1 holds the bcrypt thread
    queued = [asyncio.create_task(attempt(k, "attacker", f"a{i}")) for i, k in enumerate(wrong[2:4], start=2)]
    owner_task = asyncio.create_task(attempt(owner["api_key"], "owner", "owner"))
    await asyncio.gather(first, *queued, owner_task)
    assert "a3:auth_rate_limited" in order  # a third suspect check in flight from one client is refused
    assert order.index("owner:ok") < order.index("a2:invalid_api_key")  # the clean check went first


async def test_a_check_that_overlaps_a_rotation_is_not_cached(pool: AsyncConnectionPool[Any]) -> None:
    """Issue 14 (5): a key check in flight while its site was rotated re-cached the old identity for 30 s."""
    site = await new_site(pool)
    auth = Authenticator(pool, clock=Clock())
    checking = asyncio.create_task(auth.authenticate(site["api_key"]))
    while not auth._in_flight:
        await asyncio.sleep(0.001)
    await sites.rotate_key(pool, uuid.UUID(site["site_id"]), rounds=4)
    auth.forget_site(uuid.UUID(site["site_id"]))
    await checking  # it began before the rotation: it may pass, but it is not remembered
    assert await fail(auth, site["api_key"]) == "invalid_api_key"


async def test_failures_are_counted_by_reason_and_logged_without_the_secret(
    pool: AsyncConnectionPool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    site = await new_site(pool)
    auth = Authenticator(pool, clock=Clock())
    wrong = wrong_secrets(site, 1)[0]
    counted = {r: AUTH_FAILURES.labels(r)._value.get() for r in ("wrong_secret", "unknown_key_id", "malformed")}
    with caplog.at_level("WARNING", logger="lib.services.auth"):
        await fail(auth, wrong, "203.0.113.9")
    await fail(auth, keys.issue_key(rounds=4).plain, "203.0.113.9")
    await fail(auth, "nfy_not-a-key", "203.0.113.9")
    assert {r: AUTH_FAILURES.labels(r)._value.get() - n for r, n in counted.items()} == dict.fromkeys(counted, 1)
    logged = [r for r in caplog.records if r.getMessage() == "site authentication refused"]
    assert logged and logged[0].__dict__["lookup_id"] == keys.parse_key(wrong).lookup_id
    assert logged[0].__dict__["client"] == "203.0.113.9" and logged[0].__dict__["reason"] == "wrong_secret"
    assert all(keys.parse_key(wrong).secret not in r.getMessage() + str(r.__dict__) for r in caplog.records)


def test_admin_token_failures_are_throttled_per_client() -> None:
    clock = Clock()
    gate = AdminGate(Secret("right-token"), failure_limit=3, failure_window_s=60, clock=clock)
    for _ in range(3):
        with pytest.raises(Unauthorized):
            gate.check("Bearer wrong", "guesser")
    with pytest.raises(TooManyRequests) as throttled:  # refused unchecked, even the right token
        gate.check("Bearer right-token", "guesser")
    assert throttled.value.code == "auth_rate_limited" and throttled.value.retry_after_s >= 1
    gate.check("Bearer right-token", "admin")  # another client is not affected
    clock.now += 61
    gate.check("Bearer right-token", "guesser")


async def test_lookup_ids_are_known_without_a_query_each(pool: AsyncConnectionPool[Any]) -> None:
    auth = Authenticator(pool)
    first = await new_site(pool)
    await auth.authenticate(first["api_key"])  # loads the set
    later = await new_site(pool)  # as if registered through another API process, after the load
    assert str((await auth.authenticate(later["api_key"])).site_id) == later["site_id"]
    made_up = [keys.issue_key(rounds=4).plain for _ in range(50)]
    refreshes = auth._known.refreshes
    assert sum(await asyncio.gather(*(_refused(auth, k) for k in made_up))) == 50
    assert auth._known.refreshes - refreshes <= 2  # fifty made-up ids, one or two shared refreshes


async def _refused(auth: Authenticator, key: str) -> int:
    try:
        await auth.authenticate(key)
    except Unauthorized:
        return 1
    return 0


async def test_bcrypt_runs_in_a_thread_at_the_lowest_cpu_priority(pool: AsyncConnectionPool[Any]) -> None:
    auth = Authenticator(pool)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    site_key = keys.issue_key(rounds=4)
    assert await asyncio.get_running_loop().run_in_executor(
        auth.bcrypt_threads, keys.secret_matches, keys.parse_key(site_key.plain).secret, site_key.secret_hash
    )
    nice = await asyncio.get_running_loop().run_in_executor(
        auth.bcrypt_threads, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    )
    assert nice == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the event loop's thread keeps its own
