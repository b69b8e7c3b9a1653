"""The email worker's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lib.adapters.providers.sendgrid import SendGridSettings
from lib.common.settings import Env
from lib.delivery.settings import WorkerSettings


@dataclass(frozen=True)
class EmailWorkerSettings:
    worker: WorkerSettings
    sendgrid: SendGridSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EmailWorkerSettings:
        env = Env(environ)
        # Email has no plan-wide send rate by default (SendGrid's limits are per second in the thousands).
        return cls(WorkerSettings.from_env(env, "email", default_rate_per_s=0), SendGridSettings.from_env(env))
