"""A site's own WhatsApp number: the admin creates a WASender session for it, pairs the phone by its QR code,
and follows its status. The session's API key becomes the site's provider account on the whatsapp channel
(sealed; ``lib.services.provider_accounts``), so the site's messages go out from its number, paced on their own
(each account has its own rate limit and circuit breaker: ``lib.delivery.accounts``)."""

from __future__ import annotations

import logging
from typing import Any

from lib.adapters import db
from lib.adapters.providers.wasender_sessions import WASenderAccountSettings, WASenderSessions
from lib.adapters.sealing import Sealer
from lib.domain.channels import e164_number
from lib.domain.errors import Conflict, NotFound, Unavailable, ValidationFailed
from lib.domain.vocabulary import Channel
from lib.services import provider_accounts

log = logging.getLogger(__name__)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "phone_number": row["phone_number"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def parse_new_session(data: Any, site_name: str) -> tuple[str, str]:
    """``{"phone_number": "+E164", "name"?}``: the number and the session's name (default: the site's)."""
    phone = data.get("phone_number") if isinstance(data, dict) else None
    name = data.get("name", site_name) if isinstance(data, dict) else site_name
    problems = []
    if not isinstance(phone, str) or e164_number(phone.strip()) is None:
        problems.append({"field": "phone_number", "code": "invalid_phone", "message": "an E.164 number, +14155550123"})
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        problems.append({"field": "name", "code": "invalid", "message": "name must be 1-64 characters"})
    if problems:
        raise ValidationFailed("the session is not valid", details=problems)
    assert isinstance(phone, str) and isinstance(name, str)
    return phone.strip(), name


async def _session_row(pool: db.Pool, site_name: str) -> dict[str, Any]:
    row = await db.fetch_one(pool, "whatsapp_session_of_site", {"site_name": site_name})
    if row is None:
        raise NotFound("the site has no WhatsApp session")
    return row


async def create(
    pool: db.Pool, sealer: Sealer | None, account: WASenderAccountSettings, site_name: str, data: Any
) -> dict[str, Any]:
    phone, name = parse_new_session(data, site_name)
    if sealer is None:  # before WASender is asked: its key could not be kept
        raise Unavailable("a session's key needs NOTIFY_KEY_ENCRYPTION_KEYS", code="key_encryption_not_configured")
    if await db.fetch_one(pool, "site_by_name", {"site_name": site_name}) is None:
        raise NotFound("no such site")
    if await db.fetch_one(pool, "whatsapp_session_of_site", {"site_name": site_name}) is not None:
        raise Conflict("the site has a WhatsApp session already; delete it first", code="session_exists")
    sessions = WASenderSessions(account)  # 503 when the API has no token: after every check of the request
    session = await sessions.create(name, phone)
    if session.api_key is None:
        raise Unavailable("WASender created the session without its API key", code="wasender_unavailable")
    params = {"site_name": site_name, "session_id": session.session_id, "phone_number": phone, "status": session.status}
    row = await db.fetch_one(pool, "insert_whatsapp_session", params)
    if row is None:  # created meanwhile by another request: this one's session is not used
        log.warning("a concurrent WhatsApp session won; deleting ours", extra={"session_id": session.session_id})
        await sessions.delete(session.session_id)
        raise Conflict("the site has a WhatsApp session already", code="session_exists")
    await provider_accounts.set_account(pool, sealer, site_name, Channel.WHATSAPP, session.api_key)
    return _public(row)


async def connect(pool: db.Pool, account: WASenderAccountSettings, site_name: str) -> dict[str, Any]:
    """Start pairing; the session with the QR code's text (render it for the phone to scan)."""
    row = await _session_row(pool, site_name)
    pairing = await WASenderSessions(account).connect(row["session_id"])
    updated = await db.fetch_one(
        pool, "set_whatsapp_session_status", {"session_id": row["session_id"], "status": pairing["status"]}
    )
    return {**_public(updated or row), "qr_code": pairing["qr_code"]}


async def status(pool: db.Pool, account: WASenderAccountSettings, site_name: str) -> dict[str, Any]:
    """The session's status as WASender tells it now (and kept)."""
    row = await _session_row(pool, site_name)
    live = await WASenderSessions(account).get(row["session_id"])
    updated = await db.fetch_one(
        pool, "set_whatsapp_session_status", {"session_id": row["session_id"], "status": live.status}
    )
    return _public(updated or row)


async def stored(pool: db.Pool, site_name: str) -> dict[str, Any]:
    return _public(await _session_row(pool, site_name))


async def delete(pool: db.Pool, account: WASenderAccountSettings, site_name: str) -> None:
    """Delete the session at WASender and here; the site sends from the global number again."""
    row = await _session_row(pool, site_name)
    await WASenderSessions(account).delete(row["session_id"])
    await db.execute(pool, "delete_whatsapp_session", {"session_id": row["session_id"]})
    await provider_accounts.remove_account(pool, site_name, Channel.WHATSAPP)
