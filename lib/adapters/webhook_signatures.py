"""Checking that a provider's webhook is the provider's: SendGrid signs its Event Webhook with ECDSA P-256 over
the ``X-Twilio-Email-Event-Webhook-Timestamp`` header followed by the raw body (SHA-256), the signature base64 DER
in ``X-Twilio-Email-Event-Webhook-Signature``; its public key is shown as base64 DER (SubjectPublicKeyInfo)."""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from lib.common.settings import ConfigError

SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"


class SendGridVerifier:
    def __init__(self, public_key_b64: str) -> None:
        try:
            key = load_der_public_key(base64.b64decode(public_key_b64, validate=True))
        except (ValueError, binascii.Error) as exc:
            raise ConfigError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64 must be the base64 public key SendGrid shows"
            ) from exc
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64 must be an elliptic-curve (ECDSA) key")
        self._key = key

    def refusal(
        self, signature: str | None, timestamp: str | None, body: bytes, *, now: float, max_age_s: float
    ) -> str | None:
        """Why the request is not SendGrid's own, fresh one; None when it is."""
        if not signature or not timestamp:
            return "unsigned"
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return "bad_timestamp"
        if abs(now - int(timestamp)) > max_age_s:
            return "stale"
        try:
            self._key.verify(
                base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
            )
        except (InvalidSignature, ValueError, binascii.Error):
            return "bad_signature"
        return None
