"""The API process as its image runs it: how uvicorn serves it (``python -m functions.api``)."""

from __future__ import annotations

import socket
import time

from functions.api.settings import ApiSettings
from tests.conftest import ADMIN_TOKEN, KAFKA_BOOTSTRAP, free_port
from tests.processes import Deployable

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: notify\r\n\r\n"


def _answered(conn: socket.socket) -> bool:
    """Send a keep-alive request on ``conn``: True if it is answered, False if the server has closed it."""
    try:
        conn.sendall(HEALTHZ)
        reply = conn.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return reply.startswith(b"HTTP/1.1 200")


def test_idle_connections_are_kept_for_the_configured_time(pg_dsn: str) -> None:
    """Proxies reuse idle upstream connections for up to 60 s: the API must not close one first. The default
    outlasts that; the process honours the setting (uvicorn's own default, 5 s, would keep both below open)."""
    assert ApiSettings.from_env({"NOTIFY_ADMIN_TOKEN": "x"}).keepalive_s > 60
    port = free_port()
    env = {
        "NOTIFY_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
        "API_PORT": str(port),
        "API_KEEPALIVE_SECONDS": "2",
    }
    api = Deployable("api-keepalive", "functions.api", env, f"http://127.0.0.1:{port}/healthz").start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert _answered(conn)
            time.sleep(1.0)
            assert _answered(conn), "closed before its keep-alive time"
            time.sleep(3.0)
            assert not _answered(conn), "still open after its keep-alive time"
    finally:
        api.terminate()
