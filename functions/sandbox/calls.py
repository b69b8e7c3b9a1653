"""Request pieces both fake providers share: the Bearer key check and a size-limited JSON body."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request

from lib.common.settings import Secret
from lib.domain.validation import strict_int


class BearerKey:
    """``Authorization: Bearer <key>`` against the one key a fake provider accepts (constant-time)."""

    def __init__(self, key: Secret) -> None:
        self._key = key.reveal().encode()

    def present(self, request: Request) -> bool:
        return bool(request.headers.get("authorization", "").strip())

    def valid(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._key)


async def read_body(request: Request, max_bytes: int) -> bytes | None:
    """The raw body, or None when it is larger than ``max_bytes`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    length = strict_int(declared)
    if length is not None and length > max_bytes:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes | None) -> Any:
    """The decoded body, or None when it is absent or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
