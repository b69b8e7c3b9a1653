"""The operator's reconciliation as plain functions: against the real notify API (real PostgreSQL), with the
Secrets kept in a dict (the real Kubernetes API is in test_operator_k8s.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import pytest

from functions.operator.mirror import mirror_sites, mirrored_frappesite, needs_mirror, resource_name
from functions.operator.notify_client import NotifyAdmin, NotifyUnavailable
from functions.operator.reconcile import (
    KEY_FIELD,
    ROTATE_ANNOTATION,
    FrappeSiteView,
    SecretConflict,
    finalize,
    reconcile,
    wanted_changes,
)
from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from tests.conftest import ADMIN_HEADERS, ADMIN_TOKEN, EMAIL, register

T = TypeVar("T")
API_URL_IN_SECRET = "https://notify.example.com"


class DictSecrets:
    """The Secret store as a dict; names in `foreign` belong to someone else."""

    def __init__(self, foreign: set[str] | None = None) -> None:
        self.data: dict[str, dict[str, str]] = {}
        self.foreign = foreign or set()
        self.writes = 0

    async def read(self, name: str) -> Mapping[str, str] | None:
        if name in self.foreign:
            raise SecretConflict(f"the Secret {name} is someone else's")
        return self.data.get(name)

    async def value(self, name: str, key: str) -> Secret | None:
        found = self.data.get(name, {}).get(key)
        return Secret(found) if found is not None else None

    async def write(self, name: str, data: Mapping[str, str]) -> None:
        if name in self.foreign:
            raise SecretConflict(f"the Secret {name} is someone else's")
        self.data[name] = dict(data)
        self.writes += 1


def frappesite(site_name: str, *, namespace: str = "erp", name: str = "acme", **spec: Any) -> dict[str, Any]:
    labels = {"notify.dev/mirrored": "true"} if spec.pop("mirrored", False) else {}
    annotations = {ROTATE_ANNOTATION: spec.pop("rotate")} if "rotate" in spec else {}
    status = spec.pop("status", {})
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": str(uuid.uuid4()),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {"siteName": site_name, **spec},
        "status": status,
    }


def with_status(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**body, "status": {**body["status"], **status}}


def with_spec(body: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {**body, "spec": {**body["spec"], **spec}}


def unique_site() -> str:
    return f"op-{uuid.uuid4().hex[:10]}.example.com"


def run_with_notify(api_url: str, work: Callable[[NotifyAdmin], Awaitable[T]]) -> T:
    async def main() -> T:
        notify = NotifyAdmin(api_url, Secret(ADMIN_TOKEN))
        try:
            return await work(notify)
        finally:
            await notify.aclose()

    return asyncio.run(main())


def sync(api_url: str, body: dict[str, Any], secrets: DictSecrets) -> Any:
    view = FrappeSiteView.from_body(body)
    return run_with_notify(api_url, lambda notify: reconcile(view, notify, secrets, API_URL_IN_SECRET))


def admin_site(client: httpx.Client, site_name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/api/v1/admin/sites/{site_name}", headers=ADMIN_HEADERS).json()
    return found


def me(client: httpx.Client, key: str) -> int:
    return client.get("/api/v1/site/me", headers={"X-Site-Key": key}).status_code


def test_a_new_frappesite_registers_once_and_its_secret_holds_a_working_key(api_url: str, client: httpx.Client) -> None:
    name = unique_site()
    body = frappesite(name, enabledChannels=["email"], rateLimitPerMinute=120, siteUrl="https://erp.example.com")
    secrets = DictSecrets()
    outcome = sync(api_url, body, secrets)
    assert (outcome.phase, outcome.secret_name) == ("Ready", "acme-notify")
    stored = secrets.data["acme-notify"]
    assert stored["NOTIFY_API_URL"] == API_URL_IN_SECRET and stored["NOTIFY_SITE_NAME"] == name
    site = admin_site(client, name)
    assert site["site_id"] == outcome.site_id == stored["NOTIFY_SITE_ID"]
    assert site["managed_by"] == FrappeSiteView.from_body(body).manager
    assert (site["enabled_channels"], site["rate_limit_per_minute"]) == (["email"], 120)
    assert site["site_url"] == "https://erp.example.com"
    sent = client.post("/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": stored[KEY_FIELD]})
    assert sent.status_code == 202
    # Again, from the top (a retry, an operator restart): nothing new, the key stays.
    again = sync(api_url, with_status(body, siteId=outcome.site_id), secrets)
    assert again.phase == "Ready" and again.events == [] and secrets.writes == 1
    assert me(client, stored[KEY_FIELD]) == 200
    assert admin_site(client, name)["key_created_at"] == site["key_created_at"]


def test_a_crash_between_registering_and_writing_the_secret_is_repaired_without_a_second_site(
    api_url: str, client: httpx.Client
) -> None:
    name = unique_site()
    body = frappesite(name)
    manager = FrappeSiteView.from_body(body).manager
    lost = run_with_notify(api_url, lambda notify: notify.register(name, None, manager))  # key never stored
    secrets = DictSecrets()
    outcome = sync(api_url, body, secrets)
    assert outcome.phase == "Ready" and [reason for reason, _ in outcome.events] == ["KeyIssued"]
    assert outcome.site_id == lost["site_id"]
    assert me(client, secrets.data["acme-notify"][KEY_FIELD]) == 200
    assert me(client, lost["api_key"]) == 401
    listed = client.get("/api/v1/admin/sites", headers=ADMIN_HEADERS).json()["items"]
    assert [s["site_name"] for s in listed].count(name) == 1


def test_suspending_and_resuming_follow_the_spec(api_url: str, client: httpx.Client) -> None:
    body = frappesite(unique_site())
    secrets = DictSecrets()
    sync(api_url, body, secrets)
    key = secrets.data["acme-notify"][KEY_FIELD]
    suspended = sync(api_url, with_spec(body, suspended=True), secrets)
    assert suspended.phase == "Suspended"
    refused = client.post("/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "site_suspended"
    assert sync(api_url, with_spec(body, suspended=False), secrets).phase == "Ready"
    assert client.post("/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key}).status_code == 202


def test_the_rotate_annotation_rotates_once_per_value(api_url: str, client: httpx.Client) -> None:
    body = frappesite(unique_site())
    secrets = DictSecrets()
    first = sync(api_url, body, secrets)
    old_key = secrets.data["acme-notify"][KEY_FIELD]
    asked = with_status(
        {**body, "metadata": {**body["metadata"], "annotations": {ROTATE_ANNOTATION: "1"}}}, siteId=first.site_id
    )
    rotated = sync(api_url, asked, secrets)
    new_key = secrets.data["acme-notify"][KEY_FIELD]
    assert rotated.key_rotation == "1" and [r for r, _ in rotated.events] == ["KeyRotated"]
    assert new_key != old_key and me(client, old_key) == 401 and me(client, new_key) == 200
    settled = sync(api_url, with_status(asked, keyRotation="1"), secrets)
    assert settled.events == [] and secrets.data["acme-notify"][KEY_FIELD] == new_key


def test_the_same_site_in_two_namespaces_is_a_conflict_not_a_fight(api_url: str, client: httpx.Client) -> None:
    name = unique_site()
    first = frappesite(name, namespace="team-a", name="erp")
    sync(api_url, first, DictSecrets())
    second = frappesite(name, namespace="team-b", name="erp", suspended=True)
    outcome = sync(api_url, second, DictSecrets())
    assert outcome.phase == "Error" and outcome.reason == "SiteNameConflict"
    assert "team-a/erp" in outcome.message
    site = admin_site(client, name)
    assert site["status"] == "active" and site["managed_by"] == FrappeSiteView.from_body(first).manager


def test_a_site_registered_through_rest_is_not_taken_by_a_frappesite(api_url: str, client: httpx.Client) -> None:
    rest = register(client)
    outcome = sync(api_url, frappesite(rest["site_name"]), DictSecrets())
    assert outcome.reason == "SiteNameConflict" and "REST" in outcome.message
    assert me(client, rest["api_key"]) == 200


def test_deleting_deactivates_and_a_new_frappesite_may_take_the_name_over(api_url: str, client: httpx.Client) -> None:
    name = unique_site()
    body = frappesite(name)
    secrets = DictSecrets()
    sync(api_url, body, secrets)
    old_key = secrets.data["acme-notify"][KEY_FIELD]
    stranger = FrappeSiteView.from_body(frappesite(name, namespace="other"))
    assert "left as it is" in run_with_notify(api_url, lambda notify: finalize(stranger, notify))
    assert admin_site(client, name)["status"] == "active"
    said = run_with_notify(api_url, lambda notify: finalize(FrappeSiteView.from_body(body), notify))
    assert said.startswith("deactivated") and admin_site(client, name)["status"] == "deactivated"
    assert me(client, old_key) in (401, 403)
    assert "already" in run_with_notify(api_url, lambda notify: finalize(FrappeSiteView.from_body(body), notify))
    successor = frappesite(name, name="acme-v2")
    new_secrets = DictSecrets()
    outcome = sync(api_url, successor, new_secrets)
    assert outcome.phase == "Ready" and [r for r, _ in outcome.events] == ["SiteReactivated"]
    assert me(client, new_secrets.data["acme-v2-notify"][KEY_FIELD]) == 200 and me(client, old_key) == 401


def test_changes_made_outside_kubernetes_show_in_status(api_url: str, client: httpx.Client) -> None:
    name = unique_site()
    body = frappesite(name)
    secrets = DictSecrets()
    first = sync(api_url, body, secrets)
    known = with_status(body, siteId=first.site_id)
    client.patch(f"/api/v1/admin/sites/{name}", json={"rate_limit_per_minute": 5}, headers=ADMIN_HEADERS)
    assert sync(api_url, known, secrets).phase == "Ready"
    assert admin_site(client, name)["rate_limit_per_minute"] is None  # the spec wins over drift
    client.patch(f"/api/v1/admin/sites/{name}", json={"status": "deactivated"}, headers=ADMIN_HEADERS)
    gone = sync(api_url, known, secrets)
    assert (gone.phase, gone.reason) == ("Error", "SiteDeactivated")
    assert admin_site(client, name)["status"] == "deactivated"  # not quietly brought back


def test_a_foreign_secret_in_the_way_stops_before_registering(api_url: str, client: httpx.Client) -> None:
    name = unique_site()
    outcome = sync(api_url, frappesite(name), DictSecrets(foreign={"acme-notify"}))
    assert (outcome.phase, outcome.reason) == ("Error", "SecretConflict")
    assert client.get(f"/api/v1/admin/sites/{name}", headers=ADMIN_HEADERS).status_code == 404


def test_a_mirrored_frappesite_claims_its_site_without_a_key(api_url: str, client: httpx.Client) -> None:
    rest = register(client)
    site = admin_site(client, rest["site_name"])
    spec = mirrored_frappesite(site, resource_name(site["site_name"]))["spec"]
    body = frappesite(spec.pop("siteName"), mirrored=True, **spec)
    secrets = DictSecrets()
    outcome = sync(api_url, body, secrets)
    assert (outcome.phase, outcome.secret_name) == ("Ready", None) and secrets.data == {}
    assert admin_site(client, rest["site_name"])["managed_by"] == FrappeSiteView.from_body(body).manager
    assert me(client, rest["api_key"]) == 200  # the REST registrant's key keeps working
    assert sync(api_url, with_spec(body, suspended=True), secrets).phase == "Suspended"
    client.patch(f"/api/v1/admin/sites/{rest['site_name']}", json={"status": "deactivated"}, headers=ADMIN_HEADERS)
    assert sync(api_url, body, secrets).reason == "SiteGone"


def test_notify_down_is_a_temporary_error(client: httpx.Client) -> None:
    with pytest.raises(NotifyUnavailable):
        sync("http://127.0.0.1:9", frappesite(unique_site()), DictSecrets())


def test_wanted_changes_is_empty_when_the_site_matches() -> None:
    view = FrappeSiteView.from_body(frappesite("a.example.com", enabledChannels=["whatsapp", "email"]))
    site = {
        "status": "active",
        "enabled_channels": ["whatsapp", "email"],
        "rate_limit_per_minute": None,
        "managed_by": view.manager,
        "site_url": None,
    }
    assert wanted_changes(view, site) == {}
    assert wanted_changes(view, {**site, "status": "suspended"}) == {"status": "active"}


class ListedFrappeSites:
    def __init__(self, existing: list[dict[str, Any]]) -> None:
        self.items = existing
        self.taken_names = {fs["metadata"]["name"] for fs in existing}

    async def frappesites(self, namespaces: Any = ()) -> list[dict[str, Any]]:
        return self.items

    async def create_frappesite(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        from functions.operator.kube import KubeError

        if body["metadata"]["name"] in self.taken_names:
            raise KubeError(409, "AlreadyExists", "taken")
        self.taken_names.add(body["metadata"]["name"])
        self.items.append({**body, "metadata": {**body["metadata"], "namespace": namespace}})
        return body


def test_mirroring_creates_one_frappesite_per_rest_site_and_only_those(api_url: str, client: httpx.Client) -> None:
    rest = register(client)
    managed = unique_site()
    sync(api_url, frappesite(managed), DictSecrets())
    dead = register(client)
    client.patch(f"/api/v1/admin/sites/{dead['site_name']}", json={"status": "deactivated"}, headers=ADMIN_HEADERS)
    squatter = {"metadata": {"name": rest["site_name"]}, "spec": {"siteName": "something-else.example.com"}}
    store = ListedFrappeSites([squatter, {"metadata": {"name": "x"}, "spec": {"siteName": managed}}])
    created = run_with_notify(api_url, lambda notify: mirror_sites(notify, store, "notify"))
    assert rest["site_name"] in created and managed not in created and dead["site_name"] not in created
    mirrored = [fs for fs in store.items if fs["spec"]["siteName"] == rest["site_name"]]
    assert len(mirrored) == 1 and mirrored[0]["metadata"]["name"] == resource_name(rest["site_name"], unique=True)
    assert mirrored[0]["metadata"]["labels"] == {"notify.dev/mirrored": "true"}
    again = run_with_notify(api_url, lambda notify: mirror_sites(notify, store, "notify"))
    assert rest["site_name"] not in again


def test_resource_names_are_valid_object_names() -> None:
    assert resource_name("erp.acme.com") == "erp.acme.com"
    odd = resource_name("a..b.example.com")
    assert odd.startswith("a-b-example-com-") and len(odd) == len("a-b-example-com-") + 8
    assert needs_mirror({"managed_by": None, "status": "suspended", "site_name": "s"}, set())
    assert not needs_mirror({"managed_by": None, "status": "active", "site_name": "s"}, {"s"})


def test_deleting_while_notify_is_down_waits_for_it() -> None:
    # The handler turns this into kopf.TemporaryError: the finalizer stays until the site is deactivated.
    view = FrappeSiteView.from_body(frappesite(unique_site()))
    with pytest.raises(NotifyUnavailable):
        run_with_notify("http://127.0.0.1:9", lambda notify: finalize(view, notify))


def test_spec_senders_become_the_sites_senders(api_url: str, client: httpx.Client) -> None:
    site_name = unique_site()
    senders = {
        "default": {"address": "billing@acme.example", "name": "Acme, Inc.", "replyTo": "ar@acme.example"},
        "allowed": [{"address": "hr@acme.example"}],
        "domains": ["news.acme.example"],
    }
    body = frappesite(site_name, senders=senders)
    assert sync(api_url, body, DictSecrets()).phase == "Ready"
    stored = client.get(f"/api/v1/admin/sites/{site_name}/senders", headers=ADMIN_HEADERS).json()
    assert {k: v for k, v in stored.items() if k != "site_id"} == {
        "default": {"email": "billing@acme.example", "name": "Acme, Inc.", "reply_to": "ar@acme.example"},
        "allowed": [{"email": "hr@acme.example"}],
        "domains": ["news.acme.example"],
    }
    changed = with_spec(body, senders={"allowed": [{"address": "news@acme.example"}]})
    assert sync(api_url, changed, DictSecrets()).phase == "Ready"
    stored = client.get(f"/api/v1/admin/sites/{site_name}/senders", headers=ADMIN_HEADERS).json()
    assert (stored["default"], stored["allowed"], stored["domains"]) == (None, [{"email": "news@acme.example"}], [])
    untouched = with_spec(changed, senders=None)  # absent: notify keeps what it has
    assert sync(api_url, untouched, DictSecrets()).phase == "Ready"
    assert client.get(f"/api/v1/admin/sites/{site_name}/senders", headers=ADMIN_HEADERS).json() == stored


def test_spec_provider_accounts_give_the_site_its_key_from_a_secret(api_url: str, client: httpx.Client) -> None:
    site_name = unique_site()
    secrets = DictSecrets()
    secrets.data["acme-sendgrid"] = {"api-key": "SG.acme-own-key-1"}
    body = frappesite(
        site_name, providerAccounts={"email": {"secretKeyRef": {"name": "acme-sendgrid", "key": "api-key"}}}
    )
    outcome = sync(api_url, body, secrets)
    assert (
        outcome.phase == "Ready"
        and ("ProviderKeySet", "the site's own email provider key was set from its Secret") in outcome.events
    )
    accounts_url = f"/api/v1/admin/sites/{site_name}/provider-accounts"

    def fingerprints() -> list[str]:
        return [a["key_fingerprint"] for a in client.get(accounts_url, headers=ADMIN_HEADERS).json()["items"]]

    assert fingerprints() == [fingerprint(Secret("SG.acme-own-key-1"))]
    again = sync(api_url, body, secrets)
    assert not [e for e in again.events if e[0] == "ProviderKeySet"]  # the same key is not sent again
    secrets.data["acme-sendgrid"]["api-key"] = "SG.acme-own-key-2"  # rotated in the Secret
    sync(api_url, body, secrets)
    assert fingerprints() == [fingerprint(Secret("SG.acme-own-key-2"))]
    del secrets.data["acme-sendgrid"]
    missing = sync(api_url, body, secrets)
    assert (missing.phase, missing.reason) == ("Error", "ProviderKeyMissing")
