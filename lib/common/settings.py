"""Reading settings from the environment: typed, once, failing fast with the variable's name.

Each deployable builds its own frozen settings object from these helpers (``functions/<name>/settings.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

N = TypeVar("N", int, float)


class ConfigError(Exception):
    pass


class Secret:
    """A string that never prints: repr/str show a mask, ``.reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__


class Env:
    """Typed access to an environment mapping; every error names the variable."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def text(self, name: str, default: str | None = None) -> str:
        value = self._environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{name} is required")
            return default
        return value

    def secret(self, name: str, default: str | None = None) -> Secret:
        return Secret(self.text(name, default))

    def integer(self, name: str, default: int, *, minimum: int | None = None) -> int:
        return self._bounded(name, default, int, "an integer", minimum)

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        return self._bounded(name, default, float, "a number", minimum)

    def _bounded(self, name: str, default: N, convert: Callable[[str], N], kind: str, minimum: N | None) -> N:
        raw = self._environ.get(name, "")
        try:
            value = convert(raw) if raw != "" else default
        except ValueError:
            raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ConfigError(f"{name} must be >= {minimum}, got {value}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._environ.get(name, "").strip().lower()
        if raw == "":
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty conninfo lets libpq read the standard PG* variables.
    url: Secret = field(default_factory=lambda: Secret(""))
    pool_min: int = 2
    pool_max: int = 10

    @classmethod
    def from_env(cls, env: Env) -> DatabaseSettings:
        return cls(
            url=env.secret("DATABASE_URL", ""),
            pool_min=env.integer("DB_POOL_MIN", 2, minimum=0),
            pool_max=env.integer("DB_POOL_MAX", 10, minimum=1),
        )


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_ca_location: str = ""
    topic_prefix: str = "notifications"

    @classmethod
    def from_env(cls, env: Env) -> KafkaSettings:
        protocol = env.text("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got {protocol}"
            )
        return cls(
            bootstrap_servers=env.text("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            security_protocol=protocol,
            sasl_mechanism=env.text("KAFKA_SASL_MECHANISM", ""),
            sasl_username=env.text("KAFKA_SASL_USERNAME", ""),
            sasl_password=env.secret("KAFKA_SASL_PASSWORD", ""),
            ssl_ca_location=env.text("KAFKA_SSL_CA_LOCATION", ""),
            topic_prefix=env.text("NOTIFY_TOPIC_PREFIX", "notifications"),
        )

    def client_config(self) -> dict[str, str | int | float | bool]:
        """The librdkafka settings common to producers, consumers and the admin client."""
        config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.reveal()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config

    def topic(self, channel: str) -> str:
        return f"{self.topic_prefix}-{channel}"

    def dlq_topic(self, channel: str) -> str:
        return f"{self.topic_prefix}-{channel}-dlq"
