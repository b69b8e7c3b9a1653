"""Sites' own provider accounts end to end: each call carries its site's key, a bad key fails that site alone,
one account held back by its provider holds no other, and no key shows in any log."""

from __future__ import annotations

import time

from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import SENDGRID_KEY, SITE_SENDGRID_KEYS, Stack
from tests.e2e.test_delivery import emails, faults, sandbox, send
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
