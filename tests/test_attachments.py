"""Attachments: checked before anything is stored, kept out of Kafka records, shared by id, purged when unneeded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from functions.api.app import create_app
from lib.adapters import db
from lib.common.settings import DatabaseSettings, KafkaSettings, Secret
from lib.domain.media_links import signed_link
from lib.services.attachments import purge
from tests.conftest import EMAIL, TEST_MEDIA_KEY, WHATSAPP, ServerThread, api_settings_for, key_headers, register
from tests.test_accepting import read_records

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64


def inline(data: bytes = PDF, **extra: Any) -> dict[str, Any]:
    return {
        "filename": "SINV-0001.pdf",
        "content_type": "application/pdf",
        "content": base64.b64encode(data).decode(),
        **extra,
    }


def stored_files(pg_dsn: str, site_id: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT filename, size, sha256 FROM attachments WHERE site_id = %s ORDER BY created_at", (site_id,)
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def links(pg_dsn: str, message_id: str) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT filename, content_type, content_id FROM message_attachments"
            " WHERE message_id = %s ORDER BY position",
            (message_id,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.fixture(scope="module")
def small_limit_api(pg_dsn: str, kafka_settings: KafkaSettings) -> Iterator[httpx.Client]:
    settings = api_settings_for(pg_dsn, kafka_settings, API_ATTACHMENTS_MAX_BYTES="20000")
    with ServerThread(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def test_an_inline_attachment_is_stored_apart_and_the_record_names_it_only(
    client: httpx.Client, pg_dsn: str, kafka_settings: KafkaSettings
) -> None:
    site = register(client)
    logo = {
        "filename": "logo.png",
        "content_type": "image/png",
        "content": base64.b64encode(b"\x89PNG-logo").decode(),
        "content_id": "logo",
    }
    response = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "attachments": [inline(), logo]}, headers=key_headers(site)
    )
    assert response.status_code == 202, response.text
    message_id = response.json()["message_id"]
    assert [f[:2] for f in stored_files(pg_dsn, site["site_id"])] == [("SINV-0001.pdf", len(PDF)), ("logo.png", 9)]
    assert stored_files(pg_dsn, site["site_id"])[0][2] == hashlib.sha256(PDF).hexdigest()
    assert links(pg_dsn, message_id) == [("SINV-0001.pdf", "application/pdf", None), ("logo.png", "image/png", "logo")]
    record = read_records(kafka_settings, "email", {message_id})[message_id]["value"]
    assert [a["filename"] for a in record["attachments"]] == ["SINV-0001.pdf", "logo.png"]
    assert all("content" not in a for a in record["attachments"])  # the bytes stay in PostgreSQL


@pytest.mark.parametrize(
    ("attachments", "field", "code"),
    [
        ([inline()] * 11, "attachments", "invalid"),
        ([inline(content="not base64!")], "attachments[0].content", "invalid_base64"),
        ([inline(content_type="application/x-msdownload")], "attachments[0].content_type", "not_allowed"),
        ([inline(filename="../../etc/passwd")], "attachments[0].filename", "invalid"),
        ([inline(filename="a\r\nb.pdf")], "attachments[0].filename", "invalid"),
        ([inline(content_id="<bad id>")], "attachments[0].content_id", "invalid"),
        ([{"attachment_id": "nope"}], "attachments[0].attachment_id", "invalid"),
        ([{"attachment_id": str(uuid.uuid4())}], "attachments[0].attachment_id", "unknown_attachment"),
    ],
)
def test_bad_attachments_are_refused_with_the_field_named_and_nothing_stored(
    client: httpx.Client, pg_dsn: str, attachments: list[Any], field: str, code: str
) -> None:
    site = register(client)
    refused = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "attachments": attachments}, headers=key_headers(site)
    )
    assert refused.status_code == 422, refused.text
    assert (field, code) in [(d["field"], d["code"]) for d in refused.json()["error"]["details"]]
    assert stored_files(pg_dsn, site["site_id"]) == []


def test_too_many_bytes_is_a_413_and_whatsapp_takes_no_attachments(small_limit_api: httpx.Client, pg_dsn: str) -> None:
    site = register(small_limit_api)
    big = small_limit_api.post(
        "/api/v1/notifications/send", json={**EMAIL, "attachments": [inline(), inline()]}, headers=key_headers(site)
    )
    assert big.status_code == 413 and big.json()["error"]["details"][0]["field"] == "attachments"
    upload = small_limit_api.post("/api/v1/attachments", json=inline(PDF[:15000]), headers=key_headers(site))
    assert upload.status_code == 201, upload.text
    combined = small_limit_api.post(  # an upload counts towards the message's total too
        "/api/v1/notifications/send",
        json={**EMAIL, "attachments": [{"attachment_id": upload.json()["attachment_id"]}, inline(PDF[:6000])]},
        headers=key_headers(site),
    )
    assert combined.status_code == 413
    whatsapp = small_limit_api.post(
        "/api/v1/notifications/send", json={**WHATSAPP, "attachments": [inline(b"x")]}, headers=key_headers(site)
    )
    assert [(d["field"], d["code"]) for d in whatsapp.json()["error"]["details"]] == [("attachments", "not_supported")]
    assert len(stored_files(pg_dsn, site["site_id"])) == 1  # the upload alone


def test_an_upload_is_shared_by_bulk_items_and_only_by_its_site(client: httpx.Client, pg_dsn: str) -> None:
    site, other = register(client), register(client)
    upload = client.post("/api/v1/attachments", json=inline(), headers=key_headers(site)).json()
    assert upload["size"] == len(PDF) and upload["sha256"] == hashlib.sha256(PDF).hexdigest()
    named = {"attachment_id": upload["attachment_id"]}
    items = [{**EMAIL, "recipient": f"r{i}@example.com", "attachments": [named]} for i in range(3)]
    results = client.post("/api/v1/notifications/bulk", json={"items": items}, headers=key_headers(site)).json()[
        "results"
    ]
    assert [r["status"] for r in results] == ["accepted"] * 3
    assert all(links(pg_dsn, r["message_id"]) == [("SINV-0001.pdf", "application/pdf", None)] for r in results)
    assert len(stored_files(pg_dsn, site["site_id"])) == 1  # one file for the three
    theirs = client.post(
        "/api/v1/notifications/send", json={**EMAIL, "attachments": [named]}, headers=key_headers(other)
    )
    assert theirs.status_code == 422 and theirs.json()["error"]["details"][0]["code"] == "unknown_attachment"


def test_purge_deletes_only_what_no_message_needs(client: httpx.Client, pg_dsn: str) -> None:
    site = register(client)

    def send() -> str:
        response = client.post(
            "/api/v1/notifications/send", json={**EMAIL, "attachments": [inline()]}, headers=key_headers(site)
        )
        return str(response.json()["message_id"])

    final_old, pending_old, final_recent = send(), send(), send()
    unused = client.post("/api/v1/attachments", json=inline(b"unused"), headers=key_headers(site)).json()[
        "attachment_id"
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE attachments SET created_at = now() - interval '9 days' WHERE site_id = %s", (site["site_id"],)
        )
        conn.execute("UPDATE message_logs SET status = 'SENT' WHERE id = ANY(%s::uuid[])", ([final_old, final_recent],))
        # Final for 8 days (the table's trigger stamps updated_at on every update: set it past the trigger).
        conn.execute("ALTER TABLE message_logs DISABLE TRIGGER message_logs_updated_at")
        conn.execute("UPDATE message_logs SET updated_at = now() - interval '8 days' WHERE id = %s", (final_old,))
        conn.execute("ALTER TABLE message_logs ENABLE TRIGGER message_logs_updated_at")

    async def run() -> int:
        async with db.create_pool(DatabaseSettings(url=Secret(pg_dsn), pool_min=1, pool_max=2), name="purge") as pool:
            return await purge(pool, days=7)

    asyncio.run(run())
    with psycopg.connect(pg_dsn) as conn:
        kept = {
            str(r[0]): r[1]
            for r in conn.execute(
                "SELECT message_id, attachment_id IS NOT NULL FROM message_attachments"
                " WHERE message_id = ANY(%s::uuid[])",
                ([final_old, pending_old, final_recent],),
            )
        }
        upload_left = conn.execute("SELECT count(*) FROM attachments WHERE id = %s", (unused,)).fetchone()
    assert kept == {final_old: False, pending_old: True, final_recent: True}
    assert upload_left == (0,)


def test_whatsapp_media_is_checked_and_an_upload_is_served_only_at_its_signed_link(
    client: httpx.Client, pg_dsn: str
) -> None:
    site, other = register(client), register(client)
    by_url = client.post(
        "/api/v1/notifications/send",
        json={**WHATSAPP, "media": {"kind": "image", "url": "https://cdn.acme.example/promo.png"}},
        headers=key_headers(site),
    )
    assert by_url.status_code == 202, by_url.text
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT media FROM message_logs WHERE id = %s", (by_url.json()["message_id"],)).fetchone()
    assert row == ({"kind": "image", "url": "https://cdn.acme.example/promo.png"},)
    for media, field, code in [
        ({"kind": "image", "url": "https://169.254.169.254/latest"}, "media.url", "invalid_url"),
        ({"kind": "sticker", "url": "https://cdn.acme.example/a.webp"}, "media.kind", "invalid_choice"),
        ({"kind": "image"}, "media", "invalid"),
    ]:
        refused = client.post(
            "/api/v1/notifications/send", json={**WHATSAPP, "media": media}, headers=key_headers(site)
        )
        assert [(d["field"], d["code"]) for d in refused.json()["error"]["details"]] == [(field, code)], media
    on_email = client.post(
        "/api/v1/notifications/send",
        json={**EMAIL, "media": {"kind": "image", "url": "https://a.example/x.png"}},
        headers=key_headers(site),
    )
    assert [(d["field"], d["code"]) for d in on_email.json()["error"]["details"]] == [("media", "not_supported")]

    upload = client.post("/api/v1/attachments", json=inline(), headers=key_headers(site)).json()
    document = {"kind": "document", "attachment_id": upload["attachment_id"]}
    sent = client.post("/api/v1/notifications/send", json={**WHATSAPP, "media": document}, headers=key_headers(site))
    assert sent.status_code == 202
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT media FROM message_logs WHERE id = %s", (sent.json()["message_id"],)).fetchone()
    assert row == ({**document, "filename": "SINV-0001.pdf"},)  # named as uploaded
    theirs = client.post("/api/v1/notifications/send", json={**WHATSAPP, "media": document}, headers=key_headers(other))
    assert theirs.json()["error"]["details"] == [
        {"field": "media.attachment_id", "code": "unknown_attachment", "message": "no such attachment"}
    ]

    file_id = uuid.UUID(upload["attachment_id"])
    link = signed_link("http://unused", Secret(TEST_MEDIA_KEY), file_id)
    path = link.split("http://unused", 1)[1]
    served = client.get(path)
    assert served.status_code == 200 and served.content == PDF
    assert served.headers["content-type"] == "application/pdf"
    expired = signed_link("http://unused", Secret(TEST_MEDIA_KEY), file_id, now=0).split("http://unused", 1)[1]
    forged = signed_link("http://unused", Secret("not the key"), file_id).split("http://unused", 1)[1]
    for bad in (expired, forged, f"/media/{file_id}", f"/media/{file_id}?expires=9999999999&signature=00", "/media/x"):
        refused = client.get(bad)
        assert refused.status_code == 403 and PDF not in refused.content, bad
        assert refused.json()["error"] == {"code": "forbidden", "message": "the link is not valid", "details": None}
    gone = uuid.uuid4()
    assert (
        client.get(signed_link("http://unused", Secret(TEST_MEDIA_KEY), gone).split("http://unused", 1)[1]).status_code
        == 404
    )
