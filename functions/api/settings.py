"""The API's settings, read from the environment once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lib.adapters.providers.wasender_sessions import WASenderAccountSettings
from lib.adapters.sealing import encryption_keys
from lib.common.settings import DatabaseSettings, Env, KafkaSettings, Secret
from lib.domain.attachments import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class ApiSettings:
    admin_token: Secret
    database: DatabaseSettings
    kafka: KafkaSettings
    host: str = "127.0.0.1"
    port: int = 8080
    keepalive_s: int = 75
    head_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    body_budget_bytes: int = 64 * 1024 * 1024
    shutdown_delay_s: float = 5.0
    log_level: str = "INFO"
    max_body_bytes: int = 1024 * 1024
    max_bulk_body_bytes: int = 16 * 1024 * 1024
    bulk_concurrency_per_site: int = 2
    auth_cache_ttl_s: float = 30.0
    auth_negative_ttl_s: float = 5.0
    auth_bcrypt_concurrency: int = 1
    auth_failure_limit: int = 10
    auth_client_failure_limit: int = 20
    auth_failure_window_s: float = 60.0
    auth_throttle_delay_s: float = 1.0
    admin_failure_limit: int = 10
    key_rotations_per_hour: int = 6
    # Addresses (or CIDRs) of the proxies whose X-Forwarded-For names the client; empty: none is believed.
    trusted_proxies: tuple[str, ...] = ()
    # Test-only: the test suite issues keys with 4 rounds instead of paying 12 per site. Production stays at 12.
    key_bcrypt_rounds: int = 12
    kafka_delivery_timeout_ms: int = 10_000
    stuck_pending_after_s: float = 300.0
    scheduler_interval_s: float = 1.0
    insert_slots: int = 2
    schedule_horizon_days: int = 30
    key_encryption_keys: tuple[Secret, ...] = ()  # seal sites' own provider keys; newest first
    attachments_max_bytes: int = DEFAULT_MAX_BYTES  # decoded, one message's together
    attachment_retention_days: int = 7
    media_signing_key: Secret | None = None  # signs the links providers fetch uploaded media from
    wasender: WASenderAccountSettings = field(default_factory=WASenderAccountSettings)  # sites' WhatsApp sessions
    sendgrid_webhook_public_key: str = ""  # SendGrid's Event Webhook verification key; empty: the route refuses all
    webhook_max_age_s: float = 300.0
    wasender_webhook_secret: Secret | None = None  # what WASender puts in X-Webhook-Signature; None: refuse all

    @property
    def send_body_limit(self) -> int:
        """/send's and /attachments' body: the usual JSON plus the attachments in base64 (4 bytes for 3)."""
        return self.max_body_bytes + -(-self.attachments_max_bytes // 3) * 4

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = Env(environ)
        return cls(
            admin_token=env.secret("NOTIFY_ADMIN_TOKEN"),
            database=DatabaseSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            host=env.text("API_HOST", "127.0.0.1"),
            port=env.integer("API_PORT", 8080, minimum=1),
            keepalive_s=env.integer("API_KEEPALIVE_SECONDS", 75, minimum=1),
            head_timeout_s=env.number("API_HEAD_TIMEOUT_SECONDS", 20.0, minimum=0.1),
            body_timeout_s=env.number("API_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1),
            body_budget_bytes=env.integer("API_BODY_BUDGET_BYTES", 64 * 1024 * 1024, minimum=1024),
            shutdown_delay_s=env.number("API_SHUTDOWN_DELAY_SECONDS", 5.0, minimum=0),
            log_level=env.text("LOG_LEVEL", "INFO"),
            max_body_bytes=env.integer("API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            max_bulk_body_bytes=env.integer("API_MAX_BULK_BODY_BYTES", 16 * 1024 * 1024, minimum=1024),
            bulk_concurrency_per_site=env.integer("API_BULK_CONCURRENCY_PER_SITE", 2, minimum=1),
            auth_cache_ttl_s=env.number("AUTH_CACHE_TTL_SECONDS", 30.0, minimum=0),
            auth_negative_ttl_s=env.number("AUTH_NEGATIVE_TTL_SECONDS", 5.0, minimum=0),
            auth_bcrypt_concurrency=env.integer("AUTH_BCRYPT_CONCURRENCY", 1, minimum=1),
            auth_failure_limit=env.integer("AUTH_FAILURE_LIMIT", 10, minimum=1),
            auth_client_failure_limit=env.integer("AUTH_CLIENT_FAILURE_LIMIT", 20, minimum=1),
            auth_failure_window_s=env.number("AUTH_FAILURE_WINDOW_SECONDS", 60.0, minimum=1),
            auth_throttle_delay_s=env.number("AUTH_THROTTLE_DELAY_SECONDS", 1.0, minimum=0),
            admin_failure_limit=env.integer("ADMIN_FAILURE_LIMIT", 10, minimum=1),
            key_rotations_per_hour=env.integer("KEY_ROTATIONS_PER_HOUR", 6, minimum=1),
            key_bcrypt_rounds=env.integer("KEY_BCRYPT_ROUNDS", 12, minimum=4),
            trusted_proxies=tuple(p.strip() for p in env.text("API_TRUSTED_PROXIES", "").split(",") if p.strip()),
            kafka_delivery_timeout_ms=env.integer("KAFKA_DELIVERY_TIMEOUT_MS", 10_000, minimum=100),
            stuck_pending_after_s=env.number("STUCK_PENDING_AFTER_SECONDS", 300.0, minimum=0),
            insert_slots=env.integer("API_INSERT_SLOTS", 2, minimum=1),
            scheduler_interval_s=env.number("API_SCHEDULER_INTERVAL_SECONDS", 1.0, minimum=0.05),
            schedule_horizon_days=env.integer("API_SCHEDULE_HORIZON_DAYS", 30, minimum=1),
            key_encryption_keys=encryption_keys(env),
            attachments_max_bytes=env.integer("API_ATTACHMENTS_MAX_BYTES", DEFAULT_MAX_BYTES, minimum=0),
            attachment_retention_days=env.integer("ATTACHMENT_RETENTION_DAYS", 7, minimum=1),
            media_signing_key=Secret(key) if (key := env.text("NOTIFY_MEDIA_SIGNING_KEY", "")) else None,
            wasender=WASenderAccountSettings.from_env(env),
            sendgrid_webhook_public_key=env.text("SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64", ""),
            webhook_max_age_s=env.number("WEBHOOK_MAX_AGE_SECONDS", 300.0, minimum=1),
            wasender_webhook_secret=Secret(w) if (w := env.text("WASENDER_WEBHOOK_SECRET", "")) else None,
        )
