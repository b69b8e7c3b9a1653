"""The WhatsApp worker's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lib.adapters.providers.wasender import WASenderSettings
from lib.common.settings import Env
from lib.delivery.settings import WorkerSettings


@dataclass(frozen=True)
class WhatsAppWorkerSettings:
    worker: WorkerSettings
    wasender: WASenderSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WhatsAppWorkerSettings:
        env = Env(environ)
        # WASender plans allow only a few messages per second: one per second unless told otherwise.
        return cls(WorkerSettings.from_env(env, "whatsapp", default_rate_per_s=1), WASenderSettings.from_env(env))
