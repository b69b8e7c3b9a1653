"""``python -m functions.api``: serve the API with uvicorn (the same command runs in the image)."""

from __future__ import annotations

import uvicorn

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from lib.logs import configure_logging


def main() -> None:
    settings = ApiSettings.from_env()
    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=20,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
