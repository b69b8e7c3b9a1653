"""A site's daily metrics, read from ``site_metrics_daily`` (kept in step with the log by triggers)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from lib.adapters import db
from lib.domain.errors import ValidationFailed
from lib.domain.vocabulary import CHANNELS
from lib.services.identity import SiteIdentity

MAX_RANGE_DAYS = 366
COUNTS = ("total", "scheduled", "pending", "processing", "sent", "failed", "delivered", "bounced", "read", "cancelled")


def parse_range(params: dict[str, str]) -> tuple[date, date, str | None]:
    problems = []
    unknown = set(params) - {"from", "to", "channel"}
    problems += [
        {"field": u, "code": "unknown_parameter", "message": f"unknown parameter {u!r}"} for u in sorted(unknown)
    ]
    today = datetime.now(UTC).date()
    bounds: dict[str, date] = {"to": today, "from": today - timedelta(days=29)}
    for name in ("from", "to"):
        if name in params:
            try:
                bounds[name] = date.fromisoformat(params[name])
            except ValueError:
                problems.append({"field": name, "code": "invalid", "message": f"{name} must be a date (YYYY-MM-DD)"})
    channel = params.get("channel")
    if channel is not None and channel not in CHANNELS:
        problems.append(
            {"field": "channel", "code": "invalid_choice", "message": f"channel must be one of {', '.join(CHANNELS)}"}
        )
    if not problems and bounds["from"] > bounds["to"]:
        problems.append({"field": "from", "code": "invalid", "message": "from must not be after to"})
    if not problems and (bounds["to"] - bounds["from"]).days >= MAX_RANGE_DAYS:
        problems.append({"field": "from", "code": "range_too_large", "message": f"at most {MAX_RANGE_DAYS} days"})
    if problems:
        raise ValidationFailed("invalid query parameters", details=problems)
    return bounds["from"], bounds["to"], channel


async def daily_metrics(
    pool: db.Pool, site: SiteIdentity, first: date, last: date, channel: str | None
) -> dict[str, Any]:
    params = {"site_id": site.site_id, "from": first, "to": last, "channel": channel}
    rows = await db.fetch_all(pool, "daily_metrics_for_site", params)
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "items": [{"day": r["day"].isoformat(), "channel": r["channel"], **{k: r[k] for k in COUNTS}} for r in rows],
    }
