"""Sites' own provider accounts end to end: each call carries its site's key, a bad key fails that site alone,
one account held back by its provider holds no other, and no key shows in any log."""

from __future__ import annotations

import time

import httpx

from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import SENDGRID_KEY, SITE_SENDGRID_KEYS, WASENDER_KEY, Stack
from tests.e2e.test_delivery import emails, faults, sandbox, send, set_senders
from tests.processes import metric

BAD_KEY = "SG.revoked-or-mistyped-key"


def give_key(stack: Stack, site: dict[str, str], api_key: str) -> None:
    name = stack.http.get("/api/v1/site/me", headers={"X-Site-Key": site["X-Site-Key"]}).json()["site_name"]
    stack.http.put(
        f"/api/v1/admin/sites/{name}/provider-accounts/email",
        json={"api_key": api_key},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).raise_for_status()


def account_of(stack: Stack) -> dict[str, str]:
    """The account (key fingerprint) each accepted SendGrid call came in on, by notify message id."""
    return {m["custom_args"]["notify_message_id"]: m["account"] for m in sandbox(stack, "messages", "sendgrid")}


def test_each_site_sends_through_its_own_account_and_a_bad_key_fails_only_its_site(stack: Stack) -> None:
    worker = stack.worker("email")
    own, broken, shared = stack.register(), stack.register(), stack.register()
    give_key(stack, own, SITE_SENDGRID_KEYS[0])
    give_key(stack, broken, BAD_KEY)
    set_senders(stack, own, {"default": {"email": "billing@own.example", "name": "Own Ltd"}})
    ids = {
        name: [send(stack, site, m) for m in emails(3, name)]
        for name, site in [("own", own), ("broken", broken), ("shared", shared)]
    }
    states = stack.wait_until([i for group in ids.values() for i in group], lambda s: s["status"] in ("SENT", "FAILED"))
    assert {states[i]["status"] for i in ids["own"] + ids["shared"]} == {"SENT"}
    assert {(states[i]["status"], states[i]["failure_code"]) for i in ids["broken"]} == {
        ("FAILED", "provider_auth_failed")
    }
    assert all(states[i]["attempts"] == 1 for i in ids["broken"])  # a refused key is not retried
    accounts = account_of(stack)
    assert {accounts[i] for i in ids["own"]} == {fingerprint(Secret(SITE_SENDGRID_KEYS[0]))}
    assert {accounts[i] for i in ids["shared"]} == {fingerprint(Secret(SENDGRID_KEY))}
    # Each call carries its site's From and its site's Authorization.
    mails = {m["custom_args"]["notify_message_id"]: m for m in sandbox(stack, "messages", "sendgrid")}
    assert {(mails[i]["from"], mails[i]["from_name"]) for i in ids["own"]} == {("billing@own.example", "Own Ltd")}
    assert {mails[i]["from"] for i in ids["shared"]} == {"notify@example.com"}
    metrics_url = worker.health_url.replace("/healthz", "/metrics")
    failures = metric(
        metrics_url, "notify_worker_site_account_auth_failures_total", channel="email", site_id=broken["site_id"]
    )
    assert failures == 3
    shown = stack.http.get(f"/api/v1/notifications/{ids['broken'][0]}", headers={"X-Site-Key": broken["X-Site-Key"]})
    assert shown.json()["failure_code"] == "provider_auth_failed"  # the site sees why
    for process in stack.processes:  # no key in any log: the API's, the worker's
        text = process.log_path.read_text(errors="replace")
        assert not any(k in text for k in (SITE_SENDGRID_KEYS[0], BAD_KEY, SENDGRID_KEY)), process.log_path


def test_one_account_held_back_by_its_provider_holds_no_other(stack: Stack) -> None:
    stack.worker("email")
    held, other = stack.register(), stack.register()
    give_key(stack, held, SITE_SENDGRID_KEYS[1])
    # The held site's plan is exhausted: its provider answers 429, Retry-After 6 s, to its next 3 calls.
    faults(stack, "sendgrid", rate_limit_next=3, retry_after_s=6, account=fingerprint(Secret(SITE_SENDGRID_KEYS[1])))
    started = time.monotonic()
    waiting = [send(stack, held, m) for m in emails(3, "held")]
    flowing = [send(stack, other, m) for m in emails(5, "other")]
    stack.wait_until(flowing, lambda s: s["status"] == "SENT", timeout_s=20)
    other_done = time.monotonic() - started
    assert {s["status"] for s in stack.statuses(waiting).values()} != {"SENT"}  # still held meanwhile
    stack.wait_until(waiting, lambda s: s["status"] == "SENT", timeout_s=60)
    held_done = time.monotonic() - started
    assert other_done < 5.0 <= held_done, (other_done, held_done)  # the others never waited out the 6 s


def test_a_site_gets_its_own_whatsapp_number_paired_by_qr_and_paced_on_its_own(stack: Stack) -> None:
    stack.worker("whatsapp", PROVIDER_RATE_PER_SEC="2")
    own, other = stack.register(), stack.register()
    name = stack.http.get("/api/v1/site/me", headers={"X-Site-Key": own["X-Site-Key"]}).json()["site_name"]
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    url = f"/api/v1/admin/sites/{name}/whatsapp-session"
    created = stack.http.post(url, json={"phone_number": "+14155550100"}, headers=admin)
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["phone_number"] == "+14155550100" and "api_key" not in created.text
    again = stack.http.post(url, json={"phone_number": "+14155550100"}, headers=admin)
    assert again.status_code == 409 and again.json()["error"]["code"] == "session_exists"
    pairing = stack.http.post(f"{url}/connect", headers=admin).json()
    assert pairing["status"] == "NEED_SCAN" and pairing["qr_code"].startswith("2@")
    httpx.post(f"{stack.sandbox_url}/_sandbox/wasender/sessions/{session['session_id']}/scan").raise_for_status()
    assert stack.http.get(url, headers=admin).json()["status"] == "connected"
    mine = stack.http.get("/api/v1/site/whatsapp-session", headers={"X-Site-Key": own["X-Site-Key"]}).json()
    assert mine["status"] == "connected"

    # Two numbers, two paces: 2 a second each, so six messages from each take ~2.5 s, not ~5.5 s in one queue.
    started = time.monotonic()
    ids = [
        send(stack, site, {"channel": "whatsapp", "recipient": f"+1415555{n:04d}", "body": f"hi {n}"})
        for n in range(6)
        for site in (own, other)
    ]
    stack.wait_until(ids, lambda s: s["status"] == "SENT", timeout_s=30)
    took = time.monotonic() - started
    assert took < 4.5, took
    accounts = stack.http.get(f"/api/v1/admin/sites/{name}/provider-accounts", headers=admin).json()["items"]
    [session_account] = [a["key_fingerprint"] for a in accounts if a["channel"] == "whatsapp"]
    by_account: dict[str, int] = {}
    for chat in sandbox(stack, "messages", "wasender"):
        by_account[chat["account"]] = by_account.get(chat["account"], 0) + 1
    assert by_account == {session_account: 6, fingerprint(Secret(WASENDER_KEY)): 6}

    assert stack.http.delete(url, headers=admin).status_code == 204
    assert stack.http.get(url, headers=admin).status_code == 404
    assert stack.http.get(f"/api/v1/admin/sites/{name}/provider-accounts", headers=admin).json()["items"] == []
