"""Attachments stored apart from messages: a site uploads a file once and names it from many sends; files are
purged once no message needs them any more (see db/queries/attachments.sql: purge_attachments)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter

from lib.adapters import db
from lib.common.settings import Secret
from lib.domain.attachments import parse_attachment
from lib.domain.errors import Forbidden, NotFound, NotifyError, ValidationFailed
from lib.domain.media_links import link_is_valid
from lib.domain.validation import Problems, attachments_too_large
from lib.services.accepting import store_files
from lib.services.identity import SiteIdentity

log = logging.getLogger(__name__)
PURGED = Counter("notify_attachments_purged_total", "Stored attachments deleted after their retention")
PURGE_INTERVAL_S = 3600.0


async def upload(pool: db.Pool, site: SiteIdentity, data: Any, limit: int) -> dict[str, Any]:
    """``{"filename", "content_type", "content"(base64), "content_id"?}`` stored for the site; its id to name."""
    problems = Problems()
    if isinstance(data, dict) and "attachment_id" in data:
        problems.add("attachment_id", "unknown_field", "an upload has no attachment_id: it gets one")
    spec = parse_attachment(data, "", problems) if not problems.items else None
    if spec is None or problems.items:
        raise ValidationFailed("the attachment is not valid", details=problems.items)
    size = len(spec.content or b"")
    if size > limit:
        raise attachments_too_large(size, limit)
    [row] = await store_files(pool, site.site_id, (spec,))
    return {
        "attachment_id": str(row["id"]),
        "filename": row["filename"],
        "content_type": row["content_type"],
        "size": row["size"],
        "sha256": row["sha256"],
        "created_at": row["created_at"].isoformat(),
    }


async def purge(pool: db.Pool, *, days: int) -> int:
    """Delete the files no message needs any more; how many."""
    purged = len(await db.fetch_all(pool, "purge_attachments", {"days": days}))
    PURGED.inc(purged)
    return purged


async def purge_every_hour(pool: db.Pool, *, days: int) -> None:
    """The API's purge job (each replica runs it; a file deleted twice is deleted once)."""
    while True:
        await asyncio.sleep(PURGE_INTERVAL_S)
        try:
            purged = await purge(pool, days=days)
        except NotifyError as exc:
            log.warning("purging attachments failed", extra={"error": exc.message})
            continue
        if purged:
            log.info("purged attachments", extra={"count": purged})


async def media_file(
    pool: db.Pool, key: Secret | None, raw_id: str, params: Mapping[str, str]
) -> tuple[bytes, str, str]:
    """The file a signed media link names (content, content type, file name): the link must carry a valid,
    unexpired signature (403 otherwise, saying nothing of which), and the file must still be stored (404)."""
    try:
        attachment_id = uuid.UUID(raw_id)
    except ValueError:
        raise Forbidden("the link is not valid") from None
    expires, given = params.get("expires", ""), params.get("signature", "")
    if key is None or not link_is_valid(key, attachment_id, expires, given):
        raise Forbidden("the link is not valid")
    row = await db.fetch_one(pool, "attachment_content", {"id": attachment_id})
    if row is None:
        raise NotFound("the file is no longer stored")
    return bytes(row["content"]), row["content_type"], row["filename"]
