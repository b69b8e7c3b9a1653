"""Settings read from the environment: typed, failing with the variable's name, secrets never printed."""

from __future__ import annotations

import pytest

from functions.api.settings import ApiSettings
from lib.common.settings import ConfigError, Env
from lib.delivery.channels import ChannelWorkerSettings
from lib.domain.vocabulary import Channel


def test_values_are_typed_and_bounded() -> None:
    env = Env({"A": "3", "B": "x", "C": "0.5", "D": "yes"})
    assert (env.integer("A", 1), env.number("C", 1.0), env.flag("D", False), env.integer("MISSING", 7)) == (
        3,
        0.5,
        True,
        7,
    )
    with pytest.raises(ConfigError, match="B must be an integer"):
        env.integer("B", 1)
    with pytest.raises(ConfigError, match="A must be >= 5"):
        env.integer("A", 1, minimum=5)


def test_required_and_secret_settings() -> None:
    with pytest.raises(ConfigError, match="NOTIFY_ADMIN_TOKEN is required"):
        ApiSettings.from_env({})
    settings = ApiSettings.from_env(
        {
            "NOTIFY_ADMIN_TOKEN": "s3cret-token",
            "KAFKA_SASL_PASSWORD": "kafka-pass",
            "DATABASE_URL": "postgresql://u:dbpass@h/db",
        }
    )
    shown = repr(settings)
    assert "s3cret-token" not in shown and "kafka-pass" not in shown and "dbpass" not in shown
    assert settings.admin_token.reveal() == "s3cret-token"
    with pytest.raises(ConfigError, match="SENDGRID_FROM must be an email address"):
        ChannelWorkerSettings.from_env(Channel.EMAIL, {"SENDGRID_API_KEY": "k", "SENDGRID_FROM": "nobody"})
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL"):
        ApiSettings.from_env({"NOTIFY_ADMIN_TOKEN": "t", "KAFKA_SECURITY_PROTOCOL": "carrier-pigeon"})


def test_issued_keys_take_12_bcrypt_rounds_unless_the_tests_say_otherwise() -> None:
    """KEY_BCRYPT_ROUNDS is test-only: production keys keep bcrypt's 12 rounds."""
    assert ApiSettings.from_env({"NOTIFY_ADMIN_TOKEN": "x"}).key_bcrypt_rounds == 12
    assert ApiSettings.from_env({"NOTIFY_ADMIN_TOKEN": "x", "KEY_BCRYPT_ROUNDS": "4"}).key_bcrypt_rounds == 4
    with pytest.raises(ConfigError):
        ApiSettings.from_env({"NOTIFY_ADMIN_TOKEN": "x", "KEY_BCRYPT_ROUNDS": "3"})
