"""The `helm test` script (charts/notify/files/smoke_test.py) against a scripted API: the calls it makes, in
order, and that the throwaway site is deactivated whatever happens."""

from __future__ import annotations

import importlib.util
import json
from types import ModuleType

import httpx
import pytest

from tests.chart.conftest import CHART


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smoke_test", CHART / "files" / "smoke_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeApi:
    def __init__(self, statuses: list[str]) -> None:
        self.statuses = statuses
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        path = request.url.path
        if path == "/api/v1/site/register":
            assert request.headers["authorization"] == "Bearer admin-secret"
            assert json.loads(request.content)["site_name"].startswith("helm-test-")
            return httpx.Response(201, json={"api_key": "site-key"})
        if path == "/api/v1/notifications/send":
            assert request.headers["x-site-key"] == "site-key"
            assert json.loads(request.content)["channel"] == "email"
            return httpx.Response(202, json={"message_id": "m-1", "status": "PENDING"})
        if path == "/api/v1/notifications/m-1":
            return httpx.Response(200, json={"status": self.statuses.pop(0)})
        if path.startswith("/api/v1/admin/sites/helm-test-"):
            assert request.method == "PATCH" and json.loads(request.content) == {"status": "deactivated"}
            return httpx.Response(200, json={})
        return httpx.Response(404)


def client_for(api: FakeApi) -> httpx.Client:
    return httpx.Client(base_url="http://notify-api", transport=httpx.MockTransport(api))


def test_sent_message_passes_and_the_site_is_deactivated(monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()
    monkeypatch.setattr(script.time, "sleep", lambda _s: None)
    api = FakeApi(["PENDING", "PROCESSING", "SENT"])
    assert script.run(client_for(api), "admin-secret", 30) == 0
    assert api.calls[0] == "POST /api/v1/site/register"
    assert api.calls[1] == "POST /api/v1/notifications/send"
    assert api.calls[-1].startswith("PATCH /api/v1/admin/sites/helm-test-")


def test_failed_message_fails_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()
    monkeypatch.setattr(script.time, "sleep", lambda _s: None)
    api = FakeApi(["FAILED"])
    assert script.run(client_for(api), "admin-secret", 30) == 1
    assert api.calls[-1].startswith("PATCH ")


def test_site_is_deactivated_even_when_sending_breaks() -> None:
    script = load_script()

    calls: list[str] = []

    def broken(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/v1/notifications/send":
            return httpx.Response(503, json={})
        return FakeApi([])(request)

    transport = httpx.MockTransport(broken)
    with pytest.raises(httpx.HTTPStatusError):
        script.run(httpx.Client(base_url="http://notify-api", transport=transport), "admin-secret", 30)
    assert calls[-1].startswith("PATCH /api/v1/admin/sites/helm-test-")
