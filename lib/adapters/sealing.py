"""Secrets sealed at rest (a site's own provider API keys): Fernet tokens from the ``cryptography`` package.

Fernet is AES-128-CBC with an HMAC-SHA256 over it, so a token cannot be read or changed without the key;
MultiFernet gives rotation: ``NOTIFY_KEY_ENCRYPTION_KEYS`` lists key-encryption keys newest first, the first seals,
any of them opens, and ``notify reseal-provider-keys`` re-seals every stored token under the first, after which
an old key can be removed from the list.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from lib.common.settings import ConfigError, Env, Secret

ENV_NAME = "NOTIFY_KEY_ENCRYPTION_KEYS"


class SealedSecretUnreadable(Exception):
    """A token no configured key opens (its key was removed from the list, or the token was altered)."""


def fingerprint(secret: Secret) -> str:
    """Tells keys apart without revealing them: the first 12 hex digits of the key's SHA-256."""
    return hashlib.sha256(secret.reveal().encode()).hexdigest()[:12]


def encryption_keys(env: Env) -> tuple[Secret, ...]:
    """``NOTIFY_KEY_ENCRYPTION_KEYS``, comma-separated, newest first; checked now (ConfigError) so a bad key stops
    the process at start, not at its first sealed key."""
    keys = tuple(Secret(k.strip()) for k in env.text(ENV_NAME, "").split(",") if k.strip())
    Sealer.of(keys)
    return keys


def new_key() -> str:
    return Fernet.generate_key().decode()


class Sealer:
    def __init__(self, keys: list[Secret]) -> None:
        if not keys:
            raise ConfigError(f"{ENV_NAME} needs at least one key")
        try:
            self._fernet = MultiFernet([Fernet(k.reveal().encode()) for k in keys])
        except ValueError as exc:  # not 32 url-safe base64-encoded bytes: never echo the value
            raise ConfigError(f"{ENV_NAME}: every key must be a Fernet key (notify new-encryption-key)") from exc

    @classmethod
    def of(cls, keys: tuple[Secret, ...]) -> Sealer | None:
        """None when no key is configured: sites cannot be given their own provider keys then."""
        return cls(list(keys)) if keys else None

    def seal(self, secret: Secret) -> str:
        return self._fernet.encrypt(secret.reveal().encode()).decode()

    def open(self, token: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token.encode()).decode())
        except InvalidToken as exc:
            raise SealedSecretUnreadable("no configured key-encryption key opens this token") from exc

    def reseal(self, token: str) -> str:
        """The same secret, sealed under the first (newest) key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SealedSecretUnreadable("no configured key-encryption key opens this token") from exc
