"""``python -m functions.whatsapp``: the WhatsApp worker (the same command runs in the image)."""

from __future__ import annotations

from functions.whatsapp.settings import WhatsAppWorkerSettings
from lib.adapters.providers.wasender import WASenderProvider
from lib.delivery.worker import run


def main() -> None:
    settings = WhatsAppWorkerSettings.from_env()
    run(
        settings.worker,
        lambda w: WASenderProvider(settings.wasender, timeout_s=w.provider_timeout_s, max_connections=w.concurrency),
    )


if __name__ == "__main__":
    main()
