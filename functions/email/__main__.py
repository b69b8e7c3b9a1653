"""``python -m functions.email``: the email worker (the same command runs in the image)."""

from __future__ import annotations

from functions.email.settings import EmailWorkerSettings
from lib.adapters.providers.sendgrid import SendGridProvider
from lib.delivery.worker import run


def main() -> None:
    settings = EmailWorkerSettings.from_env()
    run(
        settings.worker,
        lambda w: SendGridProvider(settings.sendgrid, timeout_s=w.provider_timeout_s, max_connections=w.concurrency),
    )


if __name__ == "__main__":
    main()
