"""Suppression lists: a suppressed recipient is refused at accept (a bulk item alone), listed and removed by its
own site only; the admin sees every site's."""

from __future__ import annotations

import httpx
import psycopg

from tests.conftest import ADMIN_HEADERS, EMAIL, WHATSAPP, key_headers, register


def suppress(pg_dsn: str, site: dict[str, str], channel: str, recipient: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # what a hard bounce's event leaves behind
        conn.execute(
            "INSERT INTO suppressions (site_id, channel, recipient, reason) VALUES (%s, %s, %s, 'bounce')",
            (site["site_id"], channel, recipient),
        )


def test_a_suppressed_recipient_is_refused_for_its_site_and_channel_only(client: httpx.Client, pg_dsn: str) -> None:
    site, other = register(client), register(client)
    suppress(pg_dsn, site, "email", EMAIL["recipient"])
    refused = client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "recipient_suppressed"
    assert refused.json()["error"]["details"][0]["field"] == "recipient"
    assert client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(other)).status_code == 202
    assert client.post("/api/v1/notifications/send", json=WHATSAPP, headers=key_headers(site)).status_code == 202
    results = client.post(
        "/api/v1/notifications/bulk",
        json={"items": [EMAIL, {**EMAIL, "recipient": "fine@example.com"}]},
        headers=key_headers(site),
    ).json()["results"]
    assert [r["status"] for r in results] == ["rejected", "accepted"]
    assert results[0]["error"]["code"] == "recipient_suppressed"
    with psycopg.connect(pg_dsn) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM message_logs WHERE site_id = %s AND recipient = %s",
            (site["site_id"], EMAIL["recipient"]),
        ).fetchone()
    assert stored == (0,)  # a refused send stores nothing


def test_sites_list_and_remove_their_own_and_the_admin_sees_all(client: httpx.Client, pg_dsn: str) -> None:
    site, other = register(client), register(client)
    suppress(pg_dsn, site, "email", "gone@example.com")
    suppress(pg_dsn, other, "email", "theirs@example.com")
    mine = client.get("/api/v1/suppressions", headers=key_headers(site)).json()["items"]
    assert [(s["channel"], s["recipient"], s["reason"]) for s in mine] == [("email", "gone@example.com", "bounce")]
    assert client.delete("/api/v1/suppressions/email/theirs@example.com", headers=key_headers(site)).status_code == 404
    everyone = client.get(
        "/api/v1/admin/suppressions", params={"site_name": other["site_name"]}, headers=ADMIN_HEADERS
    ).json()["items"]
    assert [s["recipient"] for s in everyone] == ["theirs@example.com"]
    assert client.get("/api/v1/admin/suppressions", headers=key_headers(site)).status_code == 401
    assert client.get("/api/v1/suppressions", params={"channel": "fax"}, headers=key_headers(site)).status_code == 422
    assert client.delete("/api/v1/suppressions/email/gone@example.com", headers=key_headers(site)).status_code == 204
    again = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "recipient": "gone@example.com"}, headers=key_headers(site)
    )
    assert again.status_code == 202  # removed: sent to again


def test_a_transactional_send_passes_the_list_only_where_the_admin_allows(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)
    suppress(pg_dsn, site, "email", EMAIL["recipient"])
    transactional = {**EMAIL, "transactional": True}
    refused = client.post("/api/v1/notifications/send", json=transactional, headers=key_headers(site))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "override_not_allowed"
    patched = client.patch(
        f"/api/v1/admin/sites/{site['site_name']}", json={"suppression_override": True}, headers=ADMIN_HEADERS
    )
    assert patched.status_code == 200 and patched.json()["suppression_override"] is True
    allowed = client.post("/api/v1/notifications/send", json=transactional, headers=key_headers(site))
    assert allowed.status_code == 202, allowed.text
    plain = client.post("/api/v1/notifications/send", json=EMAIL, headers=key_headers(site))
    assert plain.status_code == 422  # a send not marked transactional is still refused
    wrong = client.post("/api/v1/notifications/send", json={**EMAIL, "transactional": "yes"}, headers=key_headers(site))
    assert [(d["field"], d["code"]) for d in wrong.json()["error"]["details"]] == [("transactional", "wrong_type")]
