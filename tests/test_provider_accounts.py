"""A site's own provider accounts: set by the admin, sealed at rest, never returned; key rotation by the CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import Any

import httpx
import psycopg
from cryptography.fernet import Fernet

from functions.api.app import create_app
from lib.common.settings import KafkaSettings
from tests.conftest import ADMIN_HEADERS, TEST_KEK, ServerThread, api_settings_for, key_headers, register

KEY = "SG.site-own-key-0123456789"


def put_key(client: httpx.Client, site_name: str, channel: str, body: Any) -> httpx.Response:
    return client.put(f"/api/v1/admin/sites/{site_name}/provider-accounts/{channel}", json=body, headers=ADMIN_HEADERS)


def sealed(pg_dsn: str, site_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT channel::text, sealed_key FROM provider_accounts WHERE site_id = %s ORDER BY channel", (site_id,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def test_a_key_is_stored_sealed_and_never_returned(client: httpx.Client, pg_dsn: str) -> None:
    site, other = register(client), register(client)
    answers = [put_key(client, site["site_name"], "email", {"api_key": KEY})]
    assert answers[0].status_code == 200, answers[0].text
    expected_fingerprint = hashlib.sha256(KEY.encode()).hexdigest()[:12]
    assert answers[0].json()["channel"] == "email" and answers[0].json()["key_fingerprint"] == expected_fingerprint
    [(channel, token)] = sealed(pg_dsn, site["site_id"])
    assert channel == "email" and KEY not in token
    assert Fernet(TEST_KEK.encode()).decrypt(token.encode()).decode() == KEY  # sealed under the configured key
    answers.append(client.get(f"/api/v1/admin/sites/{site['site_name']}/provider-accounts", headers=ADMIN_HEADERS))
    answers.append(client.get("/api/v1/site/provider-accounts", headers=key_headers(site)))
    answers.append(client.get("/api/v1/site/provider-accounts", headers=key_headers(other)))
    answers.append(client.get(f"/api/v1/admin/sites/{site['site_name']}", headers=ADMIN_HEADERS))
    answers.append(client.get("/api/v1/site/me", headers=key_headers(site)))
    assert [a.json()["items"] for a in answers[1:3]] == [[answers[0].json()]] * 2
    assert answers[3].json() == {"items": []}  # another site sees nothing of it
    assert all(KEY not in a.text for a in answers)


def test_bad_keys_channels_and_sites_are_refused_without_echo(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)
    for body in [
        {"api_key": "short"},
        {"api_key": "has space in it"},
        {"api_key": 7},
        {},
        [],
        {"api_key": KEY, "x": 1},
    ]:
        refused = put_key(client, site["site_name"], "email", body)
        assert refused.status_code == 422, (body, refused.text)
        assert KEY not in refused.text and "has space" not in refused.text
    assert put_key(client, site["site_name"], "sms", {"api_key": KEY}).status_code == 404
    assert put_key(client, "nobody.example", "email", {"api_key": KEY}).status_code == 404
    no_admin = client.put(f"/api/v1/admin/sites/{site['site_name']}/provider-accounts/email", json={"api_key": KEY})
    assert no_admin.status_code == 401
    as_site = client.put(
        f"/api/v1/admin/sites/{site['site_name']}/provider-accounts/email",
        json={"api_key": KEY},
        headers=key_headers(site),
    )
    assert as_site.status_code == 401
    assert sealed(pg_dsn, site["site_id"]) == []


def test_a_key_is_replaced_and_removed(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)
    first = put_key(client, site["site_name"], "whatsapp", {"api_key": "wa-key-one-1234"}).json()
    second = put_key(client, site["site_name"], "whatsapp", {"api_key": "wa-key-two-5678"}).json()
    assert first["key_fingerprint"] != second["key_fingerprint"] and first["created_at"] == second["created_at"]
    url = f"/api/v1/admin/sites/{site['site_name']}/provider-accounts/whatsapp"
    assert client.delete(url, headers=ADMIN_HEADERS).status_code == 204
    assert client.delete(url, headers=ADMIN_HEADERS).status_code == 404
    assert sealed(pg_dsn, site["site_id"]) == []


def test_without_a_key_encryption_key_the_routes_say_so(pg_dsn: str, kafka_settings: KafkaSettings) -> None:
    settings = api_settings_for(pg_dsn, kafka_settings, NOTIFY_KEY_ENCRYPTION_KEYS="")
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        site = register(http)
        refused = put_key(http, site["site_name"], "email", {"api_key": KEY})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "key_encryption_not_configured"
    assert sealed(pg_dsn, site["site_id"]) == []


def test_rotating_the_key_encryption_key_reseals_every_key(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)
    assert put_key(client, site["site_name"], "email", {"api_key": KEY}).status_code == 200
    newer = Fernet.generate_key().decode()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "NOTIFY_"))},
        "DATABASE_URL": pg_dsn,
        "NOTIFY_KEY_ENCRYPTION_KEYS": f"{newer},{TEST_KEK}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "lib.cli", "reseal-provider-keys"], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("resealed ") and KEY not in done.stdout + done.stderr
    [(_, token)] = sealed(pg_dsn, site["site_id"])
    assert Fernet(newer.encode()).decrypt(token.encode()).decode() == KEY  # the old key is no longer needed
