"""Key checking against the real database: one row per key, caching, throttling of wrong keys."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from lib import db, keys, sites
from lib.auth import AUTH_BCRYPT, AUTH_CACHE, Authenticator
from lib.errors import Forbidden, TooManyRequests, Unauthorized
from lib.settings import DatabaseSettings, Secret

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
    auth = Authenticator(pool, negative_ttl_s=5, failure_limit=3, failure_window_s=60, bcrypt_per_s=100, clock=clock)
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


async def test_bcrypt_budget_refuses_floods_but_not_right_keys(pool: AsyncConnectionPool[Any]) -> None:
    sites_ = [await new_site(pool) for _ in range(6)]
    clock = Clock()
    auth = Authenticator(pool, failure_limit=1000, bcrypt_per_s=1, clock=clock)
    for site in sites_:  # right keys give their token back: six first sightings in a frozen second pass
        assert str((await auth.authenticate(site["api_key"])).site_id) == site["site_id"]
    lookup_id = keys.parse_key(sites_[0]["api_key"]).lookup_id
    wrong = [f"nfy_{lookup_id}_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}" for _ in range(6)]
    for key in wrong[:4]:  # the burst
        with pytest.raises(Unauthorized):
            await auth.authenticate(key)
    before = bcrypt_count("mismatch")
    with pytest.raises(TooManyRequests) as refused:
        await auth.authenticate(wrong[4])
    assert refused.value.code == "auth_rate_limited" and bcrypt_count("mismatch") == before
    clock.now += 1.0
    with pytest.raises(Unauthorized):
        await auth.authenticate(wrong[5])


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
