"""Registering sites and managing their keys and settings."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

from lib.adapters import db
from lib.domain import keys
from lib.domain.errors import Conflict, NotFound, ValidationFailed
from lib.domain.vocabulary import CHANNELS, SITE_STATUSES

MAX_RATE = 1_000_000  # messages a minute: far above any plan, well inside the column's integer
SITE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")


def _problem(field: str, code: str, message: str) -> ValidationFailed:
    return ValidationFailed("the request is not valid", details=[{"field": field, "code": code, "message": message}])


def check_site_name(value: Any) -> str:
    if not isinstance(value, str) or not SITE_NAME.match(value):
        raise _problem(
            "site_name", "invalid", "site_name must be 1-253 lowercase letters, digits, dots or hyphens (a host name)"
        )
    return value


def check_site_url(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+(/\S*)?$", value) or len(value) > 2048:
        raise _problem("site_url", "invalid", "site_url must be an http(s) URL")
    return value


def check_managed_by(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 512 or not value.isprintable():
        raise _problem("managed_by", "invalid", "managed_by must be a printable string of 1-512 characters or null")
    return value


def public_site(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "site_id": str(row["id"]),
        "site_name": row["site_name"],
        "site_url": row["site_url"],
        "status": row["status"],
        "enabled_channels": list(row["enabled_channels"]),
        "rate_limit_per_minute": row["rate_limit_per_minute"],
        "key_created_at": row["key_created_at"].isoformat(),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "managed_by": row["managed_by"],
        "suppression_override": row["suppression_override"],
    }


async def register_site(
    pool: db.Pool,
    site_name: str,
    site_url: str | None,
    *,
    managed_by: str | None = None,
    rounds: int = keys.BCRYPT_ROUNDS,
) -> dict[str, Any]:
    """Create a site and its first key. The plain key is in the result and nowhere else, ever."""
    issued = await asyncio.to_thread(keys.issue_key, rounds)
    params = {
        "id": uuid.uuid4(),
        "site_name": site_name,
        "site_url": site_url,
        "key_lookup_id": issued.lookup_id,
        "key_hash": issued.secret_hash,
        "managed_by": managed_by,
    }
    row = await db.fetch_one(pool, "insert_site", params)
    if row is None:
        raise Conflict(f"a site named {site_name!r} is already registered", code="site_exists")
    return {**public_site(row), "api_key": issued.plain}


async def rotate_key(pool: db.Pool, site_id: uuid.UUID, *, rounds: int = keys.BCRYPT_ROUNDS) -> dict[str, Any]:
    issued = await asyncio.to_thread(keys.issue_key, rounds)
    params = {"id": site_id, "key_lookup_id": issued.lookup_id, "key_hash": issued.secret_hash}
    row = await db.fetch_one(pool, "replace_site_key", params)
    if row is None:
        raise NotFound("the site does not exist")
    return {"site_id": str(site_id), "api_key": issued.plain, "key_created_at": row["key_created_at"].isoformat()}


async def get_site(pool: db.Pool, site_id: uuid.UUID) -> dict[str, Any]:
    row = await db.fetch_one(pool, "site_by_id", {"id": site_id})
    if row is None:
        raise NotFound("the site does not exist")
    return public_site(row)


async def get_site_by_name(pool: db.Pool, site_name: str) -> dict[str, Any]:
    row = await db.fetch_one(pool, "site_by_name", {"site_name": site_name})
    if row is None:
        raise NotFound(f"no site named {site_name!r}")
    return public_site(row)


async def list_sites(pool: db.Pool) -> list[dict[str, Any]]:
    return [public_site(r) for r in await db.fetch_all(pool, "list_sites")]


async def rotate_key_by_name(pool: db.Pool, site_name: str, *, rounds: int = keys.BCRYPT_ROUNDS) -> dict[str, Any]:
    site = await get_site_by_name(pool, site_name)
    return {"site_name": site_name, **await rotate_key(pool, uuid.UUID(site["site_id"]), rounds=rounds)}


def parse_site_changes(data: Any) -> dict[str, Any]:
    """Validate an admin PATCH body: status, site_url, enabled_channels, rate_limit_per_minute, managed_by."""
    if not isinstance(data, dict):
        raise _problem("", "wrong_type", "expected an object")
    unknown = set(data) - {
        "status",
        "site_url",
        "enabled_channels",
        "rate_limit_per_minute",
        "managed_by",
        "suppression_override",
    }
    if unknown:
        raise _problem(sorted(unknown)[0], "unknown_field", f"unknown field {sorted(unknown)[0]!r}")
    status = data.get("status")
    if status is not None and status not in SITE_STATUSES:
        raise _problem("status", "invalid_choice", f"status must be one of {', '.join(SITE_STATUSES)}")
    channels = data.get("enabled_channels")
    if channels is not None and (not isinstance(channels, list) or not all(c in CHANNELS for c in channels)):
        raise _problem(
            "enabled_channels", "invalid_choice", f"enabled_channels must be a list of {', '.join(CHANNELS)}"
        )
    limit = data.get("rate_limit_per_minute")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RATE):
        raise _problem(
            "rate_limit_per_minute", "invalid", f"rate_limit_per_minute must be an integer from 1 to {MAX_RATE} or null"
        )
    override = data.get("suppression_override")
    if override is not None and not isinstance(override, bool):
        raise _problem("suppression_override", "wrong_type", "suppression_override must be true or false")
    return {
        "suppression_override": override,
        "status": status,
        "site_url": check_site_url(data.get("site_url")),
        "enabled_channels": sorted(set(channels)) if channels is not None else None,
        "set_rate_limit": "rate_limit_per_minute" in data,
        "rate_limit_per_minute": limit,
        "set_managed_by": "managed_by" in data,
        "managed_by": check_managed_by(data.get("managed_by")),
    }


async def update_site(pool: db.Pool, site_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    row = await db.fetch_one(pool, "update_site", {**changes, "site_name": site_name})
    if row is None:
        current = await get_site_by_name(pool, site_name)
        raise Conflict(
            f"the site {site_name!r} is managed by {current['managed_by']!r}; it can be claimed once deactivated",
            code="site_managed_elsewhere",
        )
    return public_site(row)
