"""The API process as its image runs it: how uvicorn serves it (``python -m functions.api``)."""

from __future__ import annotations

import http.client
import time

from functions.api.settings import ApiSettings
from tests.conftest import ADMIN_TOKEN, KAFKA_BOOTSTRAP, free_port
from tests.processes import Deployable


def _answered(conn: http.client.HTTPConnection) -> bool:
    """A keep-alive request on ``conn``'s open socket (read whole, so nothing is left for the next one): True if it
    is answered, False if the server has closed the connection."""
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        return False
    return response.status == 200


def test_idle_connections_are_kept_for_the_configured_time(pg_dsn: str) -> None:
    """Proxies reuse idle upstream connections for up to 60 s: the API must not close one first. The default
    outlasts that; the process honours the setting (with uvicorn's own 5 s the connection would still be open
    at the end)."""
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
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            assert _answered(conn)
            time.sleep(1.0)
            assert _answered(conn), "closed before its keep-alive time"
            time.sleep(3.0)
            assert not _answered(conn), "still open after its keep-alive time"
        finally:
            conn.close()
    finally:
        api.terminate()
