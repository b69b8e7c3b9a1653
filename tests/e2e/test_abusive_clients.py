"""Slow and abusive clients against one API process (``python -m functions.api``, as its image runs it): 1,000
idle connections, slowloris heads, bodies sent a byte at a time, 64 KB of headers, a million-item array, JSON
nested past Python's recursion limit. A normal client meanwhile keeps its median latency within twice the one
measured unloaded in the same run; the process's memory stays within a stated bound; nothing answers 5xx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from lib.adapters.http import BodyLimits, read_json
from lib.domain.errors import NotifyError
from tests.conftest import EMAIL
from tests.e2e.conftest import Stack

IDLE, SLOWLORIS, SLOW_BODIES = 1000, 50, 20
HEAD_TIMEOUT_S, BODY_TIMEOUT_S, KEEPALIVE_S = 3, 3, 8
MEMORY_BOUND_MB = 100  # the API's resident memory may grow this much under all of it at once


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def _median_ms(client: httpx.Client, headers: dict[str, str], n: int = 40) -> float:
    took = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/api/v1/notifications/send", json=EMAIL, headers=headers)
        took.append(time.perf_counter() - started)
        assert response.status_code == 202, response.text
    return statistics.median(took) * 1000


def _closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing the connection, or None while it is open (and silent)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return None
    sock.settimeout(0.5)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except OSError:
        pass  # reset: closed too
    return received


class Abusers:
    """The idle, slowloris and slow-body connections, dripping a byte each every half second."""

    def __init__(self, port: int, site_key: str) -> None:
        self.opened_at = time.monotonic()
        self.idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
        self.slowloris = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOWLORIS)]
        for sock in self.slowloris:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: notify\r\nX-Slow: ")
        head = (
            "POST /api/v1/notifications/send HTTP/1.1\r\nHost: notify\r\nContent-Type: application/json\r\n"
            f"X-Site-Key: {site_key}\r\nContent-Length: 500\r\n\r\n{{"
        )
        self.slow_bodies = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOW_BODIES)]
        for sock in self.slow_bodies:
            sock.sendall(head.encode())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _drip(self) -> None:
        while not self._stop.wait(0.5):
            for sock in self.slowloris + self.slow_bodies:
                with contextlib.suppress(OSError):  # closed by the server: the point
                    sock.send(b"a")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.idle + self.slowloris + self.slow_bodies:
            sock.close()


@pytest.fixture
def guarded_stack(pg_dsn: str, sandbox: str) -> Iterator[Stack]:
    env = {
        "API_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT_S),
        "API_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
        "API_KEEPALIVE_SECONDS": str(KEEPALIVE_S),
    }
    stack = Stack(pg_dsn, sandbox, api_env=env)
    yield stack
    stack.close()


def _error_code(raw: bytes) -> tuple[int, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def test_abusive_clients_leave_a_normal_client_served(guarded_stack: Stack) -> None:
    stack = guarded_stack
    site = stack.register()
    headers = {"X-Site-Key": site["X-Site-Key"]}
    assert stack.api.proc is not None
    pid = stack.api.proc.pid
    port = int(stack.api_url.rsplit(":", 1)[1])
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        _median_ms(client, headers, 10)  # warm: connections, key cache
        unloaded_ms = _median_ms(client, headers)
        rss_before = _rss_mb(pid)
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(0.05):
                peak.append(_rss_mb(pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        abusers = Abusers(port, site["X-Site-Key"])
        try:
            loaded_ms = _median_ms(client, headers)
            refusals = _oversized_requests(client, headers)
            time.sleep(max(HEAD_TIMEOUT_S, BODY_TIMEOUT_S) + 1.5)
            idle_early = sum(_closed_by_server(s) is not None for s in abusers.idle)
            heads = [_closed_by_server(s) for s in abusers.slowloris]
            bodies = [_closed_by_server(s) for s in abusers.slow_bodies]
            time.sleep(max(0.0, KEEPALIVE_S + 1.5 - (time.monotonic() - abusers.opened_at)))
            idle_late = sum(_closed_by_server(s) is not None for s in abusers.idle)
            after_ms = _median_ms(client, headers)
        finally:
            abusers.close()
            sampling.set()
            sampler.join(timeout=5)
    grown = max(peak) - rss_before
    print(
        f"\nnormal client /send median: unloaded {unloaded_ms:.1f} ms, under abuse {loaded_ms:.1f} ms, after "
        f"{after_ms:.1f} ms; API RSS {rss_before:.0f} MB, peak +{grown:.0f} MB; refusals {refusals}"
    )
    assert loaded_ms <= 2 * unloaded_ms, (unloaded_ms, loaded_ms)
    assert grown <= MEMORY_BOUND_MB, grown
    assert all(s is not None and _error_code(s) == (408, "request_timeout") for s in heads), heads[:3]
    assert all(s is not None and _error_code(s) == (408, "request_timeout") for s in bodies), bodies[:3]
    assert idle_early == 0 and idle_late == IDLE, (idle_early, idle_late)  # kept as idle ones are, then closed
    assert refusals == {
        "64 KB of headers": (431, "headers_too_large"),
        "a million items": (422, "validation_failed"),
        "a million items, chunked": (422, "validation_failed"),
        "nested 100,000 deep": (400, "invalid_json"),
    }


def _oversized_requests(client: httpx.Client, headers: dict[str, str]) -> dict[str, tuple[int, str]]:
    million = b'{"items": [' + b",".join([b"1"] * 1_000_000) + b"]}"
    answers = {
        "64 KB of headers": client.get("/healthz", headers={f"X-Pad-{i}": "x" * 1000 for i in range(64)}),
        "a million items": client.post(
            "/api/v1/notifications/bulk", content=million, headers={**headers, "Content-Type": "application/json"}
        ),
        "a million items, chunked": client.post(
            "/api/v1/notifications/bulk",
            content=iter([million[i : i + 65536] for i in range(0, len(million), 65536)]),
            headers={**headers, "Content-Type": "application/json"},
        ),
        "nested 100,000 deep": client.post(
            "/api/v1/notifications/send",
            content=b"[" * 100_000 + b"]" * 100_000,
            headers={**headers, "Content-Type": "application/json"},
        ),
    }
    return {name: (r.status_code, r.json()["error"]["code"]) for name, r in answers.items()}


def test_bodies_read_at_once_share_one_budget() -> None:
    """Past the budget a new body is refused as busy (503, temporary), and what a body held is given back."""
    limits = BodyLimits(timeout_s=5, budget_bytes=4096)

    def request(body: bytes) -> Request:
        messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        headers = [(b"content-type", b"application/json")]
        return Request({"type": "http", "method": "POST", "headers": headers}, receive)

    async def scenario() -> tuple[Any, NotifyError, Any]:
        assert limits.take(3000)  # another body, still being read
        with pytest.raises(NotifyError) as refused:
            await read_json(request(b"[" + b"1," * 800 + b"1]"), 1_000_000, limits)
        limits.give(3000)
        return await read_json(request(b"[1, 2]"), 1_000_000, limits), refused.value, limits.held

    parsed, refused, held = asyncio.run(scenario())
    assert (refused.status, refused.code, refused.temporary) == (503, "server_busy", True)
    assert parsed == [1, 2] and held == 0
