"""Site API keys: ``nfy_<lookup id>_<secret>``.

The lookup id is public and indexed, so one row is checked per request; only a bcrypt hash of the secret is
stored. The whole key is shown once, at registration or rotation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import bcrypt

from lib.domain.errors import Unauthorized

KEY_PREFIX = "nfy"
BCRYPT_ROUNDS = 12
_KEY_SHAPE = re.compile(r"^nfy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class IssuedKey:
    plain: str
    lookup_id: str
    secret_hash: str


@dataclass(frozen=True)
class PresentedKey:
    lookup_id: str
    secret: str
    digest: bytes  # sha256 of the whole key: the in-process cache's key, never the key itself


def issue_key(rounds: int = BCRYPT_ROUNDS) -> IssuedKey:
    lookup_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(f"{KEY_PREFIX}_{lookup_id}_{secret}", lookup_id, hash_secret(secret, rounds))


def hash_secret(secret: str, rounds: int = BCRYPT_ROUNDS) -> str:
    return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds)).decode()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """bcrypt's own comparison is constant-time. Slow on purpose: call it off the event loop."""
    try:
        return bcrypt.checkpw(secret.encode(), secret_hash.encode())
    except ValueError:  # a corrupt stored hash never authenticates
        return False


def parse_key(presented: str | None) -> PresentedKey:
    if not presented:
        raise Unauthorized("the X-Site-Key header is required", code="missing_api_key")
    match = _KEY_SHAPE.match(presented.strip())
    if not match:
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    return PresentedKey(match.group(1), match.group(2), hashlib.sha256(presented.strip().encode()).digest())
