"""Every route and its errors, over real HTTP against the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import ADMIN_HEADERS, EMAIL, WHATSAPP, key_headers, register


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    code: str = body["error"]["code"]
    return code


def test_health_ready_metrics(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"postgres": "ok", "kafka": "ok"}
    client.get("/api/v1/site/me")  # count at least one request
    text = client.get("/metrics").text
    assert 'notify_http_requests_total{method="GET",route="/api/v1/site/me",status="401"}' in text


def test_register_shows_key_once_and_refuses_duplicates(client: httpx.Client) -> None:
    name = f"erp-{uuid.uuid4().hex[:8]}.example.com"
    response = client.post(
        "/api/v1/site/register", json={"site_name": name, "site_url": "https://erp.example.com"}, headers=ADMIN_HEADERS
    )
    assert response.status_code == 201
    body = response.json()
    assert body["site_name"] == name and body["api_key"].startswith("nfy_") and body["status"] == "active"
    me = client.get("/api/v1/site/me", headers=key_headers(body)).json()
    assert me["site_id"] == body["site_id"] and "api_key" not in me and "key_hash" not in me
    again = client.post("/api/v1/site/register", json={"site_name": name}, headers=ADMIN_HEADERS)
    assert again.status_code == 409 and error_code(again) == "site_exists"


def test_register_needs_the_admin_token(client: httpx.Client) -> None:
    body = {"site_name": "nope.example.com"}
    missing = client.post("/api/v1/site/register", json=body)
    assert missing.status_code == 401 and error_code(missing) == "admin_token_required"
    wrong = client.post("/api/v1/site/register", json=body, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_admin_token"


def test_register_validates_its_body(client: httpx.Client) -> None:
    bad_name = client.post("/api/v1/site/register", json={"site_name": "Not A Host!"}, headers=ADMIN_HEADERS)
    assert bad_name.status_code == 422 and bad_name.json()["error"]["details"][0]["field"] == "site_name"
    bad_url = client.post(
        "/api/v1/site/register", json={"site_name": "ok.example.com", "site_url": "ftp://x"}, headers=ADMIN_HEADERS
    )
    assert bad_url.status_code == 422 and bad_url.json()["error"]["details"][0]["field"] == "site_url"


def test_send_accepts_and_reports_status(client: httpx.Client, site: dict[str, Any]) -> None:
    for payload in (EMAIL, WHATSAPP):
        response = client.post("/api/v1/notifications/send", json=payload, headers=key_headers(site))
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["status"] == "PENDING"
        status = client.get(f"/api/v1/notifications/{accepted['message_id']}", headers=key_headers(site)).json()
        assert status["message_id"] == accepted["message_id"]
        assert status["channel"] == payload["channel"] and status["recipient"] == payload["recipient"]
        assert status["status"] == "PENDING" and status["attempts"] == 0


def test_send_errors_are_clear_json(client: httpx.Client, site: dict[str, Any]) -> None:
    headers = key_headers(site)
    url = "/api/v1/notifications/send"
    cases: list[tuple[httpx.Response, int, str]] = [
        (
            client.post(url, content=b"{not json", headers={**headers, "content-type": "application/json"}),
            400,
            "invalid_json",
        ),
        (
            client.post(url, content=b"channel=email", headers={**headers, "content-type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (client.post(url, json={**EMAIL, "channel": "pigeon"}, headers=headers), 422, "validation_failed"),
        (client.post(url, json={**EMAIL, "recipient": "not-an-address"}, headers=headers), 422, "validation_failed"),
        (
            client.post(url, json={k: v for k, v in EMAIL.items() if k != "subject"}, headers=headers),
            422,
            "validation_failed",
        ),
        (client.post(url, json={**WHATSAPP, "recipient": "0044 12"}, headers=headers), 422, "validation_failed"),
        (client.post(url, json={**EMAIL, "body": 5}, headers=headers), 422, "validation_failed"),
        (client.post(url, json={**EMAIL, "surprise": 1}, headers=headers), 422, "validation_failed"),
        (client.post(url, json=[EMAIL], headers=headers), 422, "validation_failed"),
        (client.post(url, json={**EMAIL, "body": "x" * (16 * 1024 * 1024)}, headers=headers), 413, "payload_too_large"),
        (client.post(url, json={**EMAIL, "body": "x" * (2 * 1024 * 1024)}, headers=headers), 422, "validation_failed"),
        (client.post(url, json={**WHATSAPP, "body": "x" * 5000}, headers=headers), 422, "validation_failed"),
        (client.post(url, json=EMAIL, headers={**headers, "Idempotency-Key": "has space"}), 422, "validation_failed"),
        (client.post(url, json=EMAIL), 401, "missing_api_key"),
        (client.post(url, json=EMAIL, headers={"X-Site-Key": "garbage"}), 401, "invalid_api_key"),
        (client.put(url, headers=headers), 405, "method_not_allowed"),
        (client.get("/api/v1/nowhere"), 404, "not_found"),
    ]
    for response, status, code in cases:
        assert (response.status_code, error_code(response)) == (status, code), response.text
    details = client.post(url, json={"channel": "email", "recipient": "x"}, headers=headers).json()["error"]["details"]
    assert {(d["field"], d["code"]) for d in details} >= {
        ("recipient", "invalid_email"),
        ("body", "required"),
        ("subject", "required"),
    }


def test_unknown_or_foreign_message_is_404(client: httpx.Client, site: dict[str, Any]) -> None:
    headers = key_headers(site)
    assert client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers=headers).status_code == 404
    assert error_code(client.get("/api/v1/notifications/not-a-uuid", headers=headers)) == "not_found"


def test_rotate_key_retires_the_old_key(client: httpx.Client, site: dict[str, Any]) -> None:
    old = key_headers(site)
    assert client.get("/api/v1/site/me", headers=old).status_code == 200
    rotated = client.post("/api/v1/site/rotate-key", headers=old)
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    assert new_key != site["api_key"]
    refused = client.get("/api/v1/site/me", headers=old)
    assert refused.status_code == 401 and error_code(refused) == "invalid_api_key"
    assert client.get("/api/v1/site/me", headers={"X-Site-Key": new_key}).json()["site_id"] == site["site_id"]


def test_admin_can_suspend_and_reactivate(client: httpx.Client, site: dict[str, Any]) -> None:
    path = f"/api/v1/admin/sites/{site['site_name']}"
    assert client.patch(path, json={"status": "suspended"}, headers=ADMIN_HEADERS).json()["status"] == "suspended"
    refused = client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site))
    assert refused.status_code == 403 and error_code(refused) == "site_suspended"
    assert client.patch(path, json={"status": "active"}, headers=ADMIN_HEADERS).status_code == 200
    assert client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site)).status_code == 202
    assert client.get(path, headers=ADMIN_HEADERS).json()["status"] == "active"
    listed = client.get("/api/v1/admin/sites", headers=ADMIN_HEADERS).json()["items"]
    assert site["site_name"] in {s["site_name"] for s in listed}
    assert client.patch(path, json={"status": "gone"}, headers=ADMIN_HEADERS).status_code == 422
    assert client.get("/api/v1/admin/sites/missing.example.com", headers=ADMIN_HEADERS).status_code == 404
    assert client.get(path).status_code == 401


def test_admin_rotate_key_by_site_name(client: httpx.Client, site: dict[str, Any]) -> None:
    path = f"/api/v1/admin/sites/{site['site_name']}/rotate-key"
    assert error_code(client.post(path)) == "admin_token_required"
    rotated = client.post(path, headers=ADMIN_HEADERS)
    assert rotated.status_code == 200 and rotated.json()["site_id"] == site["site_id"]
    assert client.get("/api/v1/site/me", headers=key_headers(site)).status_code == 401
    assert client.get("/api/v1/site/me", headers={"X-Site-Key": rotated.json()["api_key"]}).status_code == 200
    missing = client.post("/api/v1/admin/sites/missing.example.com/rotate-key", headers=ADMIN_HEADERS)
    assert missing.status_code == 404 and error_code(missing) == "not_found"


def test_a_managed_site_is_claimed_only_by_its_manager_until_deactivated(client: httpx.Client) -> None:
    name = f"managed-{uuid.uuid4().hex[:8]}.example.com"
    body = {"site_name": name, "managed_by": "k8s:team-a/erp/1"}
    registered = client.post("/api/v1/site/register", json=body, headers=ADMIN_HEADERS)
    assert registered.status_code == 201 and registered.json()["managed_by"] == "k8s:team-a/erp/1"
    path = f"/api/v1/admin/sites/{name}"
    same = client.patch(path, json={"managed_by": "k8s:team-a/erp/1", "status": "suspended"}, headers=ADMIN_HEADERS)
    assert same.status_code == 200 and same.json()["status"] == "suspended"
    other = client.patch(path, json={"managed_by": "k8s:team-b/erp/2", "status": "active"}, headers=ADMIN_HEADERS)
    assert other.status_code == 409 and error_code(other) == "site_managed_elsewhere"
    assert "k8s:team-a/erp/1" in other.json()["error"]["message"]
    assert client.get(path, headers=ADMIN_HEADERS).json()["status"] == "suspended"  # the refused PATCH changed nothing
    client.patch(path, json={"status": "deactivated"}, headers=ADMIN_HEADERS)
    taken = client.patch(path, json={"managed_by": "k8s:team-b/erp/2", "status": "active"}, headers=ADMIN_HEADERS)
    assert taken.status_code == 200 and taken.json()["managed_by"] == "k8s:team-b/erp/2"
    assert client.patch(path, json={"managed_by": ""}, headers=ADMIN_HEADERS).status_code == 422
    assert client.patch(path, json={"managed_by": None}, headers=ADMIN_HEADERS).json()["managed_by"] is None
    nobody = client.patch("/api/v1/admin/sites/nobody.example.com", json={"managed_by": "x"}, headers=ADMIN_HEADERS)
    assert nobody.status_code == 404


def test_disabled_channel_and_rate_limit(client: httpx.Client, site: dict[str, Any]) -> None:
    path = f"/api/v1/admin/sites/{site['site_name']}"
    client.patch(path, json={"enabled_channels": ["email"], "rate_limit_per_minute": 2}, headers=ADMIN_HEADERS)
    headers = key_headers(site)
    disabled = client.post("/api/v1/notifications/send", json=WHATSAPP, headers=headers)
    assert disabled.status_code == 403 and error_code(disabled) == "channel_disabled"
    statuses = [client.post("/api/v1/notifications/send", json=EMAIL, headers=headers).status_code for _ in range(3)]
    assert statuses[:2] == [202, 202] and statuses[2] == 429
    limited = client.post("/api/v1/notifications/send", json=EMAIL, headers=headers)
    assert error_code(limited) == "rate_limited" and int(limited.headers["Retry-After"]) >= 1


def test_bulk_validates_each_item(client: httpx.Client, site: dict[str, Any]) -> None:
    items = [EMAIL, {**EMAIL, "recipient": "bad"}, WHATSAPP, {"channel": "fax"}]
    response = client.post("/api/v1/notifications/bulk", json={"items": items}, headers=key_headers(site))
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted", "rejected"]
    assert body["results"][1]["error"]["code"] == "validation_failed"
    for result in (body["results"][0], body["results"][2]):
        got = client.get(f"/api/v1/notifications/{result['message_id']}", headers=key_headers(site))
        assert got.status_code == 200
    too_many = client.post("/api/v1/notifications/bulk", json={"items": [EMAIL] * 1001}, headers=key_headers(site))
    assert too_many.status_code == 422
    assert client.post("/api/v1/notifications/bulk", json={"items": []}, headers=key_headers(site)).status_code == 422
    assert client.post("/api/v1/notifications/bulk", json={"nope": 1}, headers=key_headers(site)).status_code == 422


def test_list_is_newest_first_and_paginates(client: httpx.Client, site: dict[str, Any]) -> None:
    headers = key_headers(site)
    sent = [
        client.post("/api/v1/notifications/send", json={**EMAIL, "subject": f"n{i}"}, headers=headers).json()[
            "message_id"
        ]
        for i in range(5)
    ]
    client.post("/api/v1/notifications/send", json=WHATSAPP, headers=headers)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"channel": "email", "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/notifications", params=params, headers=headers).json()
        seen += [m["message_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))
    assert client.get("/api/v1/notifications", params={"status": "SENT"}, headers=headers).json()["items"] == []
    # An empty value is a wrong value, not a missing one (the document says what each parameter takes).
    empty = [{name: ""} for name in ("status", "channel", "since", "limit", "cursor")]
    for bad in (
        {"status": "nope"},
        {"limit": "0"},
        {"since": "yesterday"},
        {"cursor": "!!"},
        {"colour": "red"},
        *empty,
    ):
        response = client.get("/api/v1/notifications", params=bad, headers=headers)
        assert response.status_code == 422, bad


def test_metrics_route(client: httpx.Client, site: dict[str, Any]) -> None:
    headers = key_headers(site)
    for _ in range(3):
        client.post("/api/v1/notifications/send", json=EMAIL, headers=headers)
    client.post("/api/v1/notifications/send", json=WHATSAPP, headers=headers)
    items = client.get("/api/v1/metrics", headers=headers).json()["items"]
    by_channel = {i["channel"]: i for i in items}
    assert by_channel["email"]["total"] == 3 and by_channel["email"]["pending"] == 3
    assert by_channel["whatsapp"]["total"] == 1
    only = client.get("/api/v1/metrics", params={"channel": "whatsapp"}, headers=headers).json()["items"]
    assert [i["channel"] for i in only] == ["whatsapp"]
    for bad in (
        {"from": "2026-13-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"channel": "x"},
        {"from": "2020-01-01", "to": "2026-01-01"},
        {"from": ""},
        {"channel": ""},
    ):
        assert client.get("/api/v1/metrics", params=bad, headers=headers).status_code == 422


def test_tenant_isolation(client: httpx.Client) -> None:
    a, b = register(client), register(client)
    a_msg = client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(a)).json()["message_id"]
    assert client.get(f"/api/v1/notifications/{a_msg}", headers=key_headers(b)).status_code == 404
    assert client.get("/api/v1/notifications", headers=key_headers(b)).json()["items"] == []
    assert client.get("/api/v1/metrics", headers=key_headers(b)).json()["items"] == []
    assert client.get("/api/v1/site/me", headers=key_headers(b)).json()["site_id"] == b["site_id"]
    listed = client.get("/api/v1/notifications", headers=key_headers(a)).json()["items"]
    assert [m["message_id"] for m in listed] == [a_msg]


def test_openapi_lists_every_route(client: httpx.Client) -> None:
    from functions.api.app import ROUTES

    spec = client.get("/openapi.json").json()
    documented = {
        (path, method.upper()) for path, ops in spec["paths"].items() for method in ops if method != "parameters"
    }
    served = {(r.path, m) for r in ROUTES for m in (r.methods or ()) if m != "HEAD"}
    assert documented == served
