"""A site's own provider accounts: the admin sets a site's API key per channel, sealed before it is stored; no
route ever returns a key (only its fingerprint), and nothing logs one."""

from __future__ import annotations

import re
import uuid
from typing import Any

from lib.adapters import db
from lib.adapters.sealing import Sealer, fingerprint
from lib.common.settings import Secret
from lib.domain.errors import NotFound, Unavailable, ValidationFailed
from lib.domain.vocabulary import CHANNELS

_API_KEY = re.compile(r"^[\x21-\x7e]{8,512}$")  # printable ASCII, no spaces: what both providers issue


def check_channel_name(raw: str) -> str:
    if raw not in CHANNELS:
        raise NotFound(f"no such channel; one of {', '.join(CHANNELS)}")
    return raw


def parse_api_key(data: Any) -> Secret:
    """``{"api_key": "..."}``; the error never repeats the value."""
    value = data.get("api_key") if isinstance(data, dict) else None
    unknown = sorted(set(data) - {"api_key"}) if isinstance(data, dict) else []
    if not isinstance(value, str) or not _API_KEY.match(value) or unknown:
        field = unknown[0] if unknown else "api_key"
        message = "api_key must be 8-512 printable ASCII characters, and the only field"
        raise ValidationFailed(
            "the provider account is not valid", details=[{"field": field, "code": "invalid", "message": message}]
        )
    return Secret(value)


def _sealer(sealer: Sealer | None) -> Sealer:
    if sealer is None:
        raise Unavailable(
            "sites' own provider keys need NOTIFY_KEY_ENCRYPTION_KEYS on the API and the workers",
            code="key_encryption_not_configured",
        )
    return sealer


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": row["channel"],
        "key_fingerprint": row["key_fingerprint"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def set_account(
    pool: db.Pool, sealer: Sealer | None, site_name: str, channel: str, api_key: Secret
) -> tuple[uuid.UUID, dict[str, Any]]:
    """Store the site's key for the channel (replacing one it had); the site's id and the account's public view."""
    params = {
        "site_name": site_name,
        "channel": channel,
        "sealed_key": _sealer(sealer).seal(api_key),
        "key_fingerprint": fingerprint(api_key),
    }
    row = await db.fetch_one(pool, "set_provider_account", params)
    if row is None:
        raise NotFound("no such site")
    return row["site_id"], _public(row)


async def remove_account(pool: db.Pool, site_name: str, channel: str) -> None:
    """Back to the channel's global account."""
    if await db.fetch_one(pool, "delete_provider_account", {"site_name": site_name, "channel": channel}) is None:
        raise NotFound("the site has no account of its own on this channel")


async def accounts_of(pool: db.Pool, site_id: uuid.UUID) -> dict[str, Any]:
    rows = await db.fetch_all(pool, "provider_accounts_of_site", {"site_id": site_id})
    return {"items": [_public(r) for r in rows]}


async def reseal_all(pool: db.Pool, sealer: Sealer) -> int:
    """Re-seal every stored key under the newest key-encryption key; how many. A key changed meanwhile is left
    as its writer sealed it (already under the newest key)."""
    resealed = 0
    for row in await db.fetch_all(pool, "sealed_provider_keys"):
        params = {
            "site_id": row["site_id"],
            "channel": row["channel"],
            "old_sealed_key": row["sealed_key"],
            "sealed_key": sealer.reseal(row["sealed_key"]),
        }
        await db.execute(pool, "reseal_provider_key", params)
        resealed += 1
    return resealed
