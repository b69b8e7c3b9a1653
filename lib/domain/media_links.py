"""Signed, expiring links to an uploaded file, for a provider that must fetch a message's media (WASender
takes a URL, not bytes): ``{base}/media/{id}?expires={unix}&signature={hex}``, the signature an HMAC-SHA256 of
``{id}.{expires}`` under ``NOTIFY_MEDIA_SIGNING_KEY``. A wrong or expired link is refused without saying which."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from urllib.parse import urlencode

from lib.common.settings import Secret

LINK_TTL_S = 3600  # the provider fetches at send time; an hour covers its own retries


def signature(key: Secret, attachment_id: uuid.UUID, expires: int) -> str:
    return hmac.new(key.reveal().encode(), f"{attachment_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def signed_link(base_url: str, key: Secret, attachment_id: uuid.UUID, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + LINK_TTL_S)
    query = urlencode({"expires": expires, "signature": signature(key, attachment_id, expires)})
    return f"{base_url.rstrip('/')}/media/{attachment_id}?{query}"


def link_is_valid(key: Secret, attachment_id: uuid.UUID, expires: str, given: str, *, now: float | None = None) -> bool:
    if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return False
    fresh = int(expires) >= (time.time() if now is None else now)
    return hmac.compare_digest(signature(key, attachment_id, int(expires)), given) and fresh
