"""``python -m functions.api``: serve the API with uvicorn (the same command runs in the image)."""

from __future__ import annotations

from typing import Any

import uvicorn

from functions.api.app import create_app
from functions.api.settings import ApiSettings
from lib.common.logs import configure_logging


def server_options(settings: ApiSettings) -> dict[str, Any]:
    """How uvicorn serves the API (the benchmark's baseline servers use the same)."""
    return {
        "access_log": False,
        "timeout_graceful_shutdown": 20,
        # X-Forwarded-For is read by the app itself, from API_TRUSTED_PROXIES only (create_app), never by default.
        "proxy_headers": False,
        # An idle connection is closed after this long. It must outlast the idle timeout of the proxy in front
        # (ingress-nginx and most cloud load balancers keep upstream connections 60 s): with uvicorn's default of
        # 5 s, the proxy now and then sends a request on a connection the server is closing, and it fails.
        "timeout_keep_alive": settings.keepalive_s,
    }


def main() -> None:
    settings = ApiSettings.from_env()
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, **server_options(settings))


if __name__ == "__main__":
    main()
