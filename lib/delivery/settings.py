"""A channel worker's own settings, read once from the environment (``lib.delivery.channels`` adds the
provider account's)."""

from __future__ import annotations

from dataclasses import dataclass

from lib.adapters.sealing import encryption_keys
from lib.common.settings import DatabaseSettings, Env, KafkaSettings, Secret
from lib.domain.vocabulary import Channel


@dataclass(frozen=True)
class WorkerSettings:
    channel: Channel
    database: DatabaseSettings
    kafka: KafkaSettings
    consumer_group: str
    concurrency: int = 64
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    lease_s: float = 60.0
    shutdown_grace_s: float = 25.0
    provider_timeout_s: float = 15.0
    rate_per_s: float = 0.0
    circuit_failure_threshold: int = 5
    circuit_open_s: float = 10.0
    max_retries: int = 3
    retry_base_s: float = 1.0
    log_level: str = "INFO"
    key_encryption_keys: tuple[Secret, ...] = ()  # open sites' own provider keys

    @classmethod
    def from_env(cls, env: Env, channel: Channel, *, default_rate_per_s: float) -> WorkerSettings:
        return cls(
            channel=channel,
            database=DatabaseSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            consumer_group=env.text("KAFKA_CONSUMER_GROUP", f"notify-{channel}"),
            concurrency=env.integer("WORKER_CONCURRENCY", 64, minimum=1),
            http_host=env.text("WORKER_HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("WORKER_HTTP_PORT", 8081, minimum=1),
            lease_s=env.number("WORKER_LEASE_SECONDS", 60.0, minimum=1),
            shutdown_grace_s=env.number("WORKER_SHUTDOWN_GRACE_SECONDS", 25.0, minimum=0),
            provider_timeout_s=env.number("PROVIDER_TIMEOUT_SECONDS", 15.0, minimum=0.1),
            rate_per_s=env.number("PROVIDER_RATE_PER_SEC", default_rate_per_s, minimum=0),
            circuit_failure_threshold=env.integer("CIRCUIT_FAILURE_THRESHOLD", 5, minimum=1),
            circuit_open_s=env.number("CIRCUIT_OPEN_SECONDS", 10.0, minimum=0.1),
            max_retries=env.integer("PROVIDER_MAX_RETRIES", 3, minimum=0),
            retry_base_s=env.number("PROVIDER_RETRY_BASE_SECONDS", 1.0, minimum=0),
            log_level=env.text("LOG_LEVEL", "INFO"),
            key_encryption_keys=encryption_keys(env),
        )
