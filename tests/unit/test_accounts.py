"""Sealing provider keys, and the worker's choice of account per site (no services)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from lib.adapters.providers import DeliveryError, Provider
from lib.adapters.sealing import SealedSecretUnreadable, Sealer, encryption_keys, fingerprint
from lib.common.resilience import CircuitBreaker
from lib.common.settings import ConfigError, Env, Secret
from lib.delivery.accounts import Account, Accounts
from lib.domain.notification import Content, OutgoingMessage

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_sealed_keys_open_rotate_and_refuse_a_stranger() -> None:
    old = Sealer([Secret(OLD)])
    token = old.seal(Secret("SG.key"))
    assert "SG.key" not in token and old.open(token).reveal() == "SG.key"
    both = Sealer([Secret(NEW), Secret(OLD)])
    assert both.open(token).reveal() == "SG.key"  # an old token opens while its key is listed
    resealed = both.reseal(token)
    assert Sealer([Secret(NEW)]).open(resealed).reveal() == "SG.key"  # ...and after the reseal, without it
    with pytest.raises(SealedSecretUnreadable):
        Sealer([Secret(NEW)]).open(token)


def test_a_bad_key_encryption_key_stops_the_start_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as refused:
        encryption_keys(Env({"NOTIFY_KEY_ENCRYPTION_KEYS": "not-a-fernet-key-but-a-secret"}))
    assert "not-a-fernet-key-but-a-secret" not in str(refused.value)
    assert encryption_keys(Env({})) == () and Sealer.of(()) is None
    assert len(encryption_keys(Env({"NOTIFY_KEY_ENCRYPTION_KEYS": f"{NEW}, {OLD}"}))) == 2


class Recorded:
    name = "fake"

    def __init__(self, key: Secret) -> None:
        self.key = key.reveal()

    async def send(self, message: OutgoingMessage) -> str:
        return self.key

    async def aclose(self) -> None:
        return None


def accounts(rows: dict[str, dict[str, Any]], sealer: Sealer | None, clock: list[float]) -> tuple[Accounts, list[str]]:
    reads: list[str] = []

    async def find_key(site_id: str) -> dict[str, Any] | None:
        reads.append(site_id)
        return rows.get(site_id)

    def connect(key: Secret) -> Provider:
        return Recorded(key)

    def new_account(provider: Provider) -> Account:
        return Account(provider, CircuitBreaker(), None, own=True)

    return Accounts(find_key, sealer, connect, new_account, ttl_s=30, clock=lambda: clock[0]), reads


@pytest.mark.anyio
async def test_each_site_gets_its_own_account_cached_for_a_while() -> None:
    sealer = Sealer([Secret(NEW)])
    key_a, key_b = Secret("SG.site-a"), Secret("SG.site-b")
    rows = {
        "a": {"sealed_key": sealer.seal(key_a), "key_fingerprint": fingerprint(key_a)},
        "a2": {"sealed_key": sealer.seal(key_a), "key_fingerprint": fingerprint(key_a)},  # the same account
        "b": {"sealed_key": sealer.seal(key_b), "key_fingerprint": fingerprint(key_b)},
    }
    clock = [0.0]
    found, reads = accounts(rows, sealer, clock)
    a, a2, b = await found.for_site("a"), await found.for_site("a2"), await found.for_site("b")
    assert a is a2 and a is not b and a is not None and b is not None  # limits are per account, shared by its sites
    assert a.breaker is not b.breaker and a.own
    message = OutgoingMessage("m", "a", Content("x@example.com", "hi"))
    assert await a.provider.send(message) == "SG.site-a"
    assert await found.for_site("global-site") is None
    await found.for_site("a")
    assert reads == ["a", "a2", "b", "global-site"]  # cached
    rows["a"] = rows["b"]
    clock[0] = 31.0
    assert await found.for_site("a") is b  # a changed key is read again after the cache time


@pytest.mark.anyio
async def test_a_key_the_worker_cannot_open_fails_its_messages_with_the_reason() -> None:
    key = Secret("SG.site-a")
    rows = {"a": {"sealed_key": Sealer([Secret(OLD)]).seal(key), "key_fingerprint": fingerprint(key)}}
    for sealer in (None, Sealer([Secret(NEW)])):
        found, _ = accounts(rows, sealer, [0.0])
        account = await found.for_site("a")
        assert account is not None
        with pytest.raises(DeliveryError) as failed:
            await account.provider.send(OutgoingMessage("m", "a", Content("x@example.com", "hi")))
        assert failed.value.code == "provider_account_unreadable" and not failed.value.temporary
