"""The sandbox's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lib.common.settings import Env, Secret


@dataclass(frozen=True)
class SandboxSettings:
    sendgrid_api_key: Secret
    wasender_api_key: Secret
    wasender_personal_access_token: Secret
    sendgrid_webhook_private_key: Secret  # PEM; empty: one made at start
    wasender_webhook_secret: Secret
    host: str = "127.0.0.1"
    port: int = 8090
    max_records: int = 100_000  # calls kept per provider for /_sandbox (the oldest go first)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxSettings:
        env = Env(environ)
        return cls(
            sendgrid_api_key=env.secret("SANDBOX_SENDGRID_API_KEY", "sandbox-sendgrid-key"),
            wasender_api_key=env.secret("SANDBOX_WASENDER_API_KEY", "sandbox-wasender-key"),
            wasender_personal_access_token=env.secret("SANDBOX_WASENDER_PERSONAL_ACCESS_TOKEN", "sandbox-wasender-pat"),
            sendgrid_webhook_private_key=env.secret("SANDBOX_SENDGRID_WEBHOOK_PRIVATE_KEY", ""),
            wasender_webhook_secret=env.secret("SANDBOX_WASENDER_WEBHOOK_SECRET", "sandbox-wasender-webhook-secret"),
            host=env.text("SANDBOX_HOST", "127.0.0.1"),
            port=env.integer("SANDBOX_PORT", 8090, minimum=1),
            max_records=env.integer("SANDBOX_MAX_RECORDS", 100_000, minimum=1),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )
