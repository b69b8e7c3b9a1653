"""``python -m functions.api``: serve the API with uvicorn (the same command runs in the image)."""

from __future__ import annotations

import logging
import threading
from types import FrameType
from typing import Any

import uvicorn

from functions.api.app import Draining, create_app
from functions.api.settings import ApiSettings
from lib.adapters.http import MAX_HEAD_BYTES, GuardedHttpToolsProtocol
from lib.common.logs import configure_logging

log = logging.getLogger(__name__)


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
        # uvicorn's own httptools protocol, with the limits on slow and oversized request heads it lacks.
        "http": GuardedHttpToolsProtocol.for_limits(settings.head_timeout_s, MAX_HEAD_BYTES),
    }


class DrainingServer(uvicorn.Server):
    """uvicorn, told to stop, first answers /readyz with 503 for ``delay_s`` while serving every other request, so
    the endpoints and the proxy in front stop routing to it; then it drains and exits as uvicorn does. A second
    signal skips the wait."""

    def __init__(self, config: uvicorn.Config, draining: Draining, delay_s: float) -> None:
        super().__init__(config)
        self.draining = draining
        self.delay_s = delay_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.draining.since is None and self.delay_s > 0:
            self.draining.start()
            log.info("stopping: /readyz answers 503, draining in %.1f s", self.delay_s)
            threading.Timer(self.delay_s, super().handle_exit, (sig, frame)).start()
            return
        super().handle_exit(sig, frame)


def main() -> None:
    settings = ApiSettings.from_env()
    configure_logging(settings.log_level)
    draining = Draining()
    app = create_app(settings, draining=draining)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, **server_options(settings))
    DrainingServer(config, draining, settings.shutdown_delay_s).run()


if __name__ == "__main__":
    main()
