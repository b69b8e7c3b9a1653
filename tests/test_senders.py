"""Sender identities: the admin sets a site's senders, the site reads its own, a send names one or is refused."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg

from tests.conftest import ADMIN_HEADERS, EMAIL, WHATSAPP, key_headers, register

ACME = {
    "default": {"email": "billing@acme.example", "name": "Acme, Inc. Billing", "reply_to": "accounts@acme.example"},
    "allowed": [{"email": "hr@acme.example", "name": "Acme HR"}, "info@bücher.example"],
    "domains": ["News.Acme.Example", "straße.example"],
}


def put_senders(client: httpx.Client, site: dict[str, Any], body: Any) -> httpx.Response:
    return client.put(f"/api/v1/admin/sites/{site['site_name']}/senders", json=body, headers=ADMIN_HEADERS)


def stored_sender(pg_dsn: str, message_id: str) -> Any:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT sender FROM message_logs WHERE id = %s", (message_id,)).fetchone()
    assert row is not None
    return row[0]


def test_the_admin_sets_senders_and_the_site_reads_its_own(client: httpx.Client) -> None:
    site, other = register(client), register(client)
    response = put_senders(client, site, ACME)
    assert response.status_code == 200, response.text
    expected = {
        "site_id": site["site_id"],
        "default": ACME["default"],
        "allowed": [{"email": "hr@acme.example", "name": "Acme HR"}, {"email": "info@xn--bcher-kva.example"}],
        "domains": ["news.acme.example", "xn--strae-oqa.example"],
    }
    assert response.json() == expected
    assert client.get("/api/v1/site/senders", headers=key_headers(site)).json() == expected
    assert client.get(f"/api/v1/admin/sites/{site['site_name']}/senders", headers=ADMIN_HEADERS).json() == expected
    theirs = client.get("/api/v1/site/senders", headers=key_headers(other)).json()
    assert theirs == {"site_id": other["site_id"], "default": None, "allowed": [], "domains": []}
    assert client.put("/api/v1/admin/sites/x.example/senders", json={}, headers=ADMIN_HEADERS).status_code == 404
    assert client.put(f"/api/v1/admin/sites/{site['site_name']}/senders", json={}).status_code == 401
    assert (
        client.put(f"/api/v1/admin/sites/{site['site_name']}/senders", json={}, headers=key_headers(site)).status_code
        == 401
    )


def test_bad_senders_are_refused_with_each_field_named(client: httpx.Client) -> None:
    site = register(client)
    body = {
        "default": {"email": "billing@acme.example", "name": "Acme\r\nBcc: victim@example.com"},
        "allowed": [
            "not-an-address",
            {"email": "a@acme.example", "reply_to": "nope"},
            {"email": "b@acme.example", "x": 1},
        ],
        "domains": ["acme..example", 7],
        "extra": True,
    }
    response = put_senders(client, site, body)
    assert response.status_code == 422
    assert {(d["field"], d["code"]) for d in response.json()["error"]["details"]} == {
        ("extra", "unknown_field"),
        ("default.name", "invalid"),  # a header line break: no header injection
        ("allowed[0]", "invalid_email"),
        ("allowed[1].reply_to", "invalid_email"),
        ("allowed[2]", "invalid"),
        ("domains[0]", "invalid"),
        ("domains[1]", "invalid"),
    }


def test_a_send_goes_out_as_an_allowed_sender_or_is_refused(client: httpx.Client, pg_dsn: str) -> None:
    site, plain = register(client), register(client)
    assert put_senders(client, site, ACME).status_code == 200

    def send(who: dict[str, Any], payload: dict[str, Any]) -> httpx.Response:
        return client.post("/api/v1/notifications/send", json=payload, headers=key_headers(who))

    default = send(site, EMAIL)
    assert stored_sender(pg_dsn, default.json()["message_id"]) == ACME["default"]
    named = send(site, {**EMAIL, "from": {"email": "HR@acme.example", "name": "Jane at HR"}})
    assert stored_sender(pg_dsn, named.json()["message_id"]) == {"email": "hr@acme.example", "name": "Jane at HR"}
    idn = send(site, {**EMAIL, "from": "info@BÜCHER.example"})
    assert stored_sender(pg_dsn, idn.json()["message_id"]) == {"email": "info@xn--bcher-kva.example"}
    by_domain = send(site, {**EMAIL, "from": "weekly@news.acme.example"})
    assert stored_sender(pg_dsn, by_domain.json()["message_id"]) == {"email": "weekly@news.acme.example"}
    shown = client.get(f"/api/v1/notifications/{by_domain.json()['message_id']}", headers=key_headers(site)).json()
    assert shown["sender"] == {"email": "weekly@news.acme.example"}

    refused = send(site, {**EMAIL, "from": "ceo@acme.example"})
    assert refused.status_code == 422
    assert [(d["field"], d["code"]) for d in refused.json()["error"]["details"]] == [("from", "sender_not_allowed")]
    other_site = send(plain, {**EMAIL, "from": "billing@acme.example"})  # another site's sender is not yours
    assert other_site.status_code == 422
    assert stored_sender(pg_dsn, send(plain, EMAIL).json()["message_id"]) is None  # the service's own sender
    whatsapp = send(site, {**WHATSAPP, "from": "billing@acme.example"})
    assert [(d["field"], d["code"]) for d in whatsapp.json()["error"]["details"]] == [("from", "not_supported")]
    bulk = client.post(
        "/api/v1/notifications/bulk",
        json={"items": [{**EMAIL, "from": "hr@acme.example"}, {**EMAIL, "from": "x@y.example"}]},
        headers=key_headers(site),
    ).json()["results"]
    assert [r["status"] for r in bulk] == ["accepted", "rejected"]
    assert bulk[1]["error"]["details"][0]["code"] == "sender_not_allowed"


def test_a_new_policy_applies_to_the_next_send_at_once(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)
    refused = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "from": "hr@acme.example"}, headers=key_headers(site)
    )
    assert refused.status_code == 422  # and the site's identity is now in the key cache
    assert put_senders(client, site, {"allowed": ["hr@acme.example"]}).status_code == 200
    accepted = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "from": "hr@acme.example"}, headers=key_headers(site)
    )
    assert accepted.status_code == 202, accepted.text
    assert stored_sender(pg_dsn, accepted.json()["message_id"]) == {"email": "hr@acme.example"}
