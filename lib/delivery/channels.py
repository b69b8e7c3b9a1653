"""What each channel's worker delivers through, in one registry beside validation's (``lib.domain.channels``).

An entry names the provider adapter whose settings the worker reads and the send rate the worker keeps when
``PROVIDER_RATE_PER_SEC`` is not set. ``functions/<channel>/`` only names its channel; everything else is here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lib.adapters.providers import Provider, ProviderSettings
from lib.adapters.providers.sendgrid import SendGridSettings
from lib.adapters.providers.wasender import WASenderSettings
from lib.common.settings import Env, Secret
from lib.delivery.settings import WorkerSettings
from lib.domain.vocabulary import Channel


@dataclass(frozen=True)
class DeliveryRules:
    provider_settings: Callable[[Env], ProviderSettings]
    default_rate_per_s: float  # 0: no plan-wide limit


DELIVERY: dict[Channel, DeliveryRules] = {
    # SendGrid's limits are per second in the thousands: no rate of our own unless told.
    Channel.EMAIL: DeliveryRules(SendGridSettings.from_env, default_rate_per_s=0),
    # WASender plans allow only a few messages per second: one per second unless told otherwise.
    Channel.WHATSAPP: DeliveryRules(WASenderSettings.from_env, default_rate_per_s=1),
}


@dataclass(frozen=True)
class ChannelWorkerSettings:
    """A channel worker deployable's one settings object: the worker's own and its provider account's."""

    worker: WorkerSettings
    provider: ProviderSettings

    @classmethod
    def from_env(cls, channel: Channel, environ: Mapping[str, str] | None = None) -> ChannelWorkerSettings:
        env = Env(environ)
        rules = DELIVERY[channel]
        return cls(
            WorkerSettings.from_env(env, channel, default_rate_per_s=rules.default_rate_per_s),
            rules.provider_settings(env),
        )

    def connect(self) -> Provider:
        return self.provider.connect(timeout_s=self.worker.provider_timeout_s, max_connections=self.worker.concurrency)

    def connect_with(self, api_key: Secret) -> Provider:
        """A client of a site's own account: this provider's settings with the site's key."""
        return self.provider.with_api_key(api_key).connect(
            timeout_s=self.worker.provider_timeout_s, max_connections=self.worker.concurrency
        )
