"""The API process as its image runs it: how uvicorn serves it (``python -m functions.api``)."""

from __future__ import annotations

import http.client
import signal
import time

from bench.common import free_port
from functions.api.settings import ApiSettings
from tests.conftest import ADMIN_TOKEN, KAFKA_BOOTSTRAP
from tests.processes import Deployable


def api_process(name: str, pg_dsn: str, port: int, **settings: str) -> Deployable:
    """``python -m functions.api`` on ``port``, started and healthy, with ``settings`` added to its environment."""
    env = {
        "NOTIFY_ADMIN_TOKEN": ADMIN_TOKEN,
        "DATABASE_URL": pg_dsn,
        "KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
        "API_PORT": str(port),
        **settings,
    }
    return Deployable(name, "functions.api", env, f"http://127.0.0.1:{port}/healthz").start()


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
    api = api_process("api-keepalive", pg_dsn, port, API_KEEPALIVE_SECONDS="2")
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


def test_readyz_answers_503_as_soon_as_sigterm_arrives_and_requests_are_still_served(pg_dsn: str) -> None:
    """On SIGTERM the API first tells the load balancer (/readyz 503) while it keeps serving, for
    API_SHUTDOWN_DELAY_SECONDS; then it drains and exits."""

    port = free_port()
    api = api_process("api-draining", pg_dsn, port, API_SHUTDOWN_DELAY_SECONDS="3")
    assert api.proc is not None
    deadline = time.monotonic() + 20
    while _status(port, "/readyz") != 200:  # ready first (Kafka's metadata answered)
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.2)
    signalled = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert _status(port, "/readyz") == 503
    assert _status(port, "/healthz") == 200  # still serving
    # uvicorn re-raises the signal once it has shut down cleanly: the exit status is SIGTERM's
    assert api.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert time.monotonic() - signalled >= 3


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()
