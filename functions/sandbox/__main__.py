"""``python -m functions.sandbox``: the fake SendGrid and WASender (the same command runs in the image)."""

from __future__ import annotations

import uvicorn

from functions.sandbox.app import build_app
from functions.sandbox.settings import SandboxSettings
from lib.common.logs import configure_logging


def main() -> None:
    settings = SandboxSettings.from_env()
    configure_logging(settings.log_level)
    # No proxy-header rewriting: nothing here uses the client's address, and the benchmark counts every microsecond.
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
