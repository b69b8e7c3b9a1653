"""Suppression lists: the addresses a site's messages are not sent to any more on a channel (a hard bounce, a
spam report, an unsubscribe put them there: ``lib.services.provider_events``). A site lists and removes its own;
the admin sees every site's."""

from __future__ import annotations

from typing import Any

from lib.adapters import db
from lib.domain.errors import NotFound, ValidationFailed
from lib.domain.validation import strict_int
from lib.domain.vocabulary import CHANNELS
from lib.services.identity import SiteIdentity


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "created_at": row["created_at"].isoformat()}


def parse_query(params: dict[str, str], allowed: set[str]) -> dict[str, Any]:
    unknown = set(params) - allowed
    channel = params.get("channel")
    limit = strict_int(params.get("limit", "100"))
    problems = [
        {"field": u, "code": "unknown_parameter", "message": f"unknown parameter {u!r}"} for u in sorted(unknown)
    ]
    if channel is not None and channel not in CHANNELS:
        problems.append({"field": "channel", "code": "invalid_choice", "message": f"one of {', '.join(CHANNELS)}"})
    if limit is None or not 1 <= limit <= 1000:
        problems.append({"field": "limit", "code": "invalid", "message": "limit must be an integer from 1 to 1000"})
    if problems:
        raise ValidationFailed("invalid query parameters", details=problems)
    return {"channel": channel, "limit": limit, "site_name": params.get("site_name")}


async def of_site(pool: db.Pool, site: SiteIdentity, query: dict[str, Any]) -> dict[str, Any]:
    params = {"site_id": site.site_id, "channel": query["channel"], "limit": query["limit"]}
    return {"items": [_entry(r) for r in await db.fetch_all(pool, "suppressions_of_site", params)]}


async def remove(pool: db.Pool, site: SiteIdentity, channel: str, recipient: str) -> None:
    """Send to the address again (the site knows it is good now)."""
    if channel not in CHANNELS:
        raise NotFound("no such channel")
    params = {"site_id": site.site_id, "channel": channel, "recipient": recipient}
    if await db.fetch_one(pool, "delete_suppression", params) is None:
        raise NotFound("the address is not suppressed")


async def every_site(pool: db.Pool, query: dict[str, Any]) -> dict[str, Any]:
    params = {"site_name": query["site_name"], "channel": query["channel"], "limit": query["limit"]}
    return {"items": [_entry(r) for r in await db.fetch_all(pool, "all_suppressions", params)]}
