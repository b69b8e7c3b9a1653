"""Issue 5: the FrappeSite operator against a real kube-apiserver (tools/k8s), the real notify API and
PostgreSQL. The operator runs as a child process (`python -m functions.operator`, the image's command) with a
token of the chart's own ServiceAccount, bound by the chart's own RBAC: if the rules the chart renders were not
enough, these scenarios would fail; they are the least-privilege check too.

This control plane has no controller-manager: no garbage collector deletes the Secret owned by a deleted
FrappeSite, so the test checks the owner reference rather than the Secret's deletion."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.common import free_port
from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from tests.conftest import ADMIN_HEADERS, ADMIN_TOKEN, EMAIL, register
from tests.k8s.conftest import CHART, DEV_VALUES, ROOT, Cluster, wait_for
from tests.processes import LOG_DIR, Deployable, metric

EXAMPLE = ROOT / "examples" / "frappesite.yaml"
# Watched namespaces: Roles there, nothing cluster-wide but the CRD itself.
OPERATOR_KINDS = {"CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding"}


@dataclass
class Operator:
    cluster: Cluster
    release_ns: str
    sites_ns: str
    other_ns: str
    mirror_ns: str
    env: dict[str, str]
    process: Deployable

    def restart(self, *, kill: bool = False, **env: str) -> None:
        if kill:
            self.process.kill()
        else:
            assert self.process.terminate() == 0
        environ = {**self.env, **env}
        self.process = Deployable("operator", "functions.operator", environ, self.process.health_url).start()

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return self.cluster.kubectl(*args, stdin=stdin, check=check).stdout

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if out.returncode != 0:
            assert "NotFound" in out.stderr, out.stderr
            return None
        found: dict[str, Any] = json.loads(out.stdout)
        return found

    def frappesite(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.get("frappesite", namespace, name)
        assert found is not None, f"FrappeSite {namespace}/{name} is missing"
        return found

    def secret_data(self, namespace: str, name: str) -> dict[str, str]:
        secret = self.get("secret", namespace, name)
        assert secret is not None, f"Secret {namespace}/{name} is missing"
        return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def render_operator(k8s: Cluster, release_ns: str, *sets: str) -> list[dict[str, Any]]:
    """Every object the chart renders with the operator on: the sandbox values, plus `sets` (`--set-json`)."""
    rendered = k8s.run(
        "helm", "template", "notify", str(CHART), "--namespace", release_ns, "--values", str(DEV_VALUES),
        "--set", "operator.enabled=true", *(arg for item in sets for arg in ("--set-json", item)),
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(rendered) if d]


def operator_objects(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs = [d for d in rendered if d["kind"] in OPERATOR_KINDS]
    return [d for d in docs if d["kind"] == "CustomResourceDefinition" or "operator" in d["metadata"]["name"]]


def rendered_env(rendered: list[dict[str, Any]], name: str) -> str:
    """A plain variable of the operator's Deployment as the chart sets it."""
    deployment = next(d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("operator"))
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == name))


def apply_rbac(k8s: Cluster, objects: list[dict[str, Any]], release_ns: str) -> str:
    """Apply the operator's objects; return a token of its ServiceAccount."""
    for obj in objects:  # helm template leaves the release namespace out of namespaced objects
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
            obj["metadata"].setdefault("namespace", release_ns)
    k8s.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump_all(objects))
    k8s.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "crd/frappesites.notify.dev")
    account = next(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")
    return k8s.kubectl("create", "token", account, "-n", release_ns, "--duration", "2h").stdout.strip()


def token_kubeconfig(k8s: Cluster, token: str, path: Path) -> str:
    admin = json.loads(k8s.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": "notify-operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "notify-operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture(scope="module")
def operator(cluster: Cluster, api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    run = uuid.uuid4().hex[:6]
    release_ns, sites_ns, other_ns, mirror_ns = (f"{p}-{run}" for p in ("notify", "erp", "erp2", "mirror"))
    for ns in (release_ns, sites_ns, other_ns, mirror_ns):
        cluster.kubectl("create", "namespace", ns)
    rendered = render_operator(
        cluster,
        release_ns,
        f"operator.watchNamespaces={json.dumps([sites_ns, other_ns])}",
        f"operator.mirrorNamespace={json.dumps(mirror_ns)}",
    )
    objects = operator_objects(rendered)
    assert {o["kind"] for o in objects} == OPERATOR_KINDS
    token = apply_rbac(cluster, objects, release_ns)
    kubeconfig = token_kubeconfig(cluster, token, tmp_path_factory.mktemp("operator") / "kubeconfig")
    port = free_port()
    log_start = (LOG_DIR / "operator.log").stat().st_size if (LOG_DIR / "operator.log").exists() else 0
    env = {
        "KUBECONFIG": kubeconfig,
        "NOTIFY_API_URL": api_url,
        "NOTIFY_ADMIN_TOKEN": ADMIN_TOKEN,
        "NOTIFY_PUBLIC_API_URL": "https://notify.example.com",
        # as the chart sets them, so the operator watches exactly where the chart's Roles are
        "OPERATOR_NAMESPACES": rendered_env(rendered, "OPERATOR_NAMESPACES"),
        "OPERATOR_MIRROR_NAMESPACE": rendered_env(rendered, "OPERATOR_MIRROR_NAMESPACE"),
        "OPERATOR_SYNC_INTERVAL_SECONDS": "2",
        "OPERATOR_MIRROR_INTERVAL_SECONDS": "1",
        "OPERATOR_HTTP_PORT": str(port),
    }
    process = Deployable("operator", "functions.operator", env, f"http://127.0.0.1:{port}/healthz").start()
    running = Operator(cluster, release_ns, sites_ns, other_ns, mirror_ns, env, process)
    yield running
    for ns in (sites_ns, other_ns, mirror_ns):  # with the operator still running, so the finalizers complete
        cluster.kubectl("delete", "frappesites", "--all", "-n", ns, "--timeout=60s", check=False)
    running.process.stop()
    log = running.process.log_path.read_text()[log_start:]
    forbidden = [line for line in log.splitlines() if "403" in line and "Forbidden" in line]
    assert not forbidden, f"the operator was refused by RBAC: {forbidden[:3]}"


@pytest.fixture
def notify(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        yield http


def phase_of(op: Operator, namespace: str, name: str, phase: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        found = op.get("frappesite", namespace, name)
        return found if found and (found.get("status") or {}).get("phase") == phase else None

    return check


def example_site_name(op: Operator) -> str:
    # The example names erp.acme.com; each test run has its own database, so the name is free in it.
    return str(yaml.safe_load(EXAMPLE.read_text())["spec"]["siteName"])


def send_with(notify: httpx.Client, key: str) -> httpx.Response:
    return notify.post("/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key})


def test_the_example_registers_a_site_once_with_a_working_key_in_its_secret(
    operator: Operator, notify: httpx.Client
) -> None:
    op = operator
    # The Secret its spec.providerAccounts names: the site's own SendGrid key.
    op.kubectl(
        "create", "secret", "generic", "erp-acme-sendgrid", "-n", op.sites_ns, "--from-literal=api-key=SG.acme-own-key"
    )
    op.kubectl("apply", "-n", op.sites_ns, "-f", str(EXAMPLE))
    ready = wait_for("erp-acme Ready", phase_of(op, op.sites_ns, "erp-acme", "Ready"))
    status = ready["status"]
    assert status["secretName"] == "erp-acme-notify" and "NOTIFY_API_KEY" not in json.dumps(status)
    assert status["conditions"][0]["type"] == "Ready" and status["conditions"][0]["status"] == "True"
    data = op.secret_data(op.sites_ns, "erp-acme-notify")
    assert data["NOTIFY_API_URL"] == "https://notify.example.com" and data["NOTIFY_SITE_ID"] == status["siteId"]
    assert send_with(notify, data["NOTIFY_API_KEY"]).status_code == 202
    secret = op.get("secret", op.sites_ns, "erp-acme-notify")
    assert secret is not None
    assert [r["uid"] for r in secret["metadata"]["ownerReferences"]] == [ready["metadata"]["uid"]]
    sites = notify.get("/api/v1/admin/sites", headers=ADMIN_HEADERS).json()["items"]
    assert [s["site_name"] for s in sites].count(example_site_name(op)) == 1
    listed = op.kubectl("get", "frappesites", "-n", op.sites_ns)
    assert listed.split()[:5] == ["NAME", "SITE", "PHASE", "CHANNELS", "AGE"] and "Ready" in listed
    events = op.kubectl("get", "events", "-n", op.sites_ns, "--field-selector", "involvedObject.name=erp-acme")
    assert "Registered" in events
    name = example_site_name(op)
    accounts = notify.get(f"/api/v1/admin/sites/{name}/provider-accounts", headers=ADMIN_HEADERS).json()["items"]
    assert [(a["channel"], a["key_fingerprint"]) for a in accounts] == [
        ("email", fingerprint(Secret("SG.acme-own-key")))
    ]
    senders = notify.get(f"/api/v1/admin/sites/{name}/senders", headers=ADMIN_HEADERS).json()
    assert senders["default"] == {"email": "billing@acme.com", "name": "Acme, Inc.", "reply_to": "accounts@acme.com"}
    bad = '{"spec": {"providerAccounts": {"sms": {"secretKeyRef": {"name": "x", "key": "y"}}}}}'
    refused = op.cluster.kubectl(
        "patch", "frappesite", "erp-acme", "-n", op.sites_ns, "--type", "merge", "-p", bad, check=False
    )
    assert (
        refused.returncode != 0 and "a key of providerAccounts must be a channel" in refused.stderr
    )  # the CRD's check


def test_suspending_refuses_the_key_and_resuming_accepts_it(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    key = op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"]
    op.kubectl(
        "patch", "frappesite", "erp-acme", "-n", op.sites_ns, "--type", "merge", "-p", '{"spec":{"suspended":true}}'
    )
    wait_for("erp-acme Suspended", phase_of(op, op.sites_ns, "erp-acme", "Suspended"))
    refused = send_with(notify, key)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "site_suspended"
    op.kubectl(
        "patch", "frappesite", "erp-acme", "-n", op.sites_ns, "--type", "merge", "-p", '{"spec":{"suspended":false}}'
    )
    wait_for("erp-acme Ready again", phase_of(op, op.sites_ns, "erp-acme", "Ready"))
    assert send_with(notify, key).status_code == 202


def test_the_rotate_annotation_replaces_the_key(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    old = op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"]
    op.kubectl("annotate", "frappesite", "erp-acme", "-n", op.sites_ns, "--overwrite", "notify.dev/rotate-key=r1")
    wait_for(
        "keyRotation r1",
        lambda: (op.frappesite(op.sites_ns, "erp-acme").get("status") or {}).get("keyRotation") == "r1",
    )
    new = op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"]
    assert new != old
    assert send_with(notify, old).status_code == 401 and send_with(notify, new).status_code == 202


def test_a_restart_changes_nothing(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    name = example_site_name(op)
    before = notify.get(f"/api/v1/admin/sites/{name}", headers=ADMIN_HEADERS).json()
    key = op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"]
    op.restart()
    time.sleep(5)  # resume handlers and two periodic re-checks (OPERATOR_SYNC_INTERVAL_SECONDS=2) have run
    after = notify.get(f"/api/v1/admin/sites/{name}", headers=ADMIN_HEADERS).json()
    assert after["key_created_at"] == before["key_created_at"] and after["site_id"] == before["site_id"]
    assert op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"] == key
    assert send_with(notify, key).status_code == 202
    assert op.frappesite(op.sites_ns, "erp-acme")["status"]["phase"] == "Ready"


def test_a_kill_mid_creation_ends_with_one_site_and_a_working_key(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    site_name = f"crash-{uuid.uuid4().hex[:8]}.example.com"
    manifest = yaml.safe_dump(
        {
            "apiVersion": "notify.dev/v1alpha1",
            "kind": "FrappeSite",
            "metadata": {"name": "crashy"},
            "spec": {"siteName": site_name},
        }
    )
    op.kubectl("apply", "-n", op.sites_ns, "-f", "-", stdin=manifest)
    wait_for(
        "the site registered",
        lambda: notify.get(f"/api/v1/admin/sites/{site_name}", headers=ADMIN_HEADERS).status_code == 200,
        15,
    )
    op.restart(kill=True)
    ready = wait_for("crashy Ready", phase_of(op, op.sites_ns, "crashy", "Ready"))
    data = op.secret_data(op.sites_ns, "crashy-notify")
    assert data["NOTIFY_SITE_ID"] == ready["status"]["siteId"]
    assert send_with(notify, data["NOTIFY_API_KEY"]).status_code == 202
    sites = notify.get("/api/v1/admin/sites", headers=ADMIN_HEADERS).json()["items"]
    assert [s["site_name"] for s in sites].count(site_name) == 1


def test_the_same_site_in_another_namespace_ends_in_an_error_condition(
    operator: Operator, notify: httpx.Client
) -> None:
    op = operator
    op.kubectl("apply", "-n", op.other_ns, "-f", str(EXAMPLE))
    failed = wait_for("the duplicate in Error", phase_of(op, op.other_ns, "erp-acme", "Error"))
    condition = failed["status"]["conditions"][0]
    assert condition["status"] == "False" and condition["reason"] == "SiteNameConflict"
    assert f"{op.sites_ns}/erp-acme" in condition["message"]
    assert op.get("secret", op.other_ns, "erp-acme-notify") is None
    events = op.kubectl("get", "events", "-n", op.other_ns, "--field-selector", "type=Warning")
    assert "SiteNameConflict" in events
    op.kubectl("delete", "frappesite", "erp-acme", "-n", op.other_ns, "--timeout=30s")
    site = notify.get(f"/api/v1/admin/sites/{example_site_name(op)}", headers=ADMIN_HEADERS).json()
    assert site["status"] == "active"  # deleting the loser did not deactivate the winner's site


def test_a_site_registered_through_rest_is_mirrored(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    site = register(notify)
    mirrored = wait_for("the mirrored FrappeSite Ready", phase_of(op, op.mirror_ns, site["site_name"], "Ready"))
    assert mirrored["metadata"]["labels"]["notify.dev/mirrored"] == "true"
    assert mirrored["status"]["mirrored"] is True and mirrored["status"]["secretName"] == ""
    assert mirrored["status"]["siteId"] == site["site_id"]
    assert send_with(notify, site["api_key"]).status_code == 202  # the registrant's key still works
    metrics_url = op.process.health_url.replace("/healthz", "/metrics")
    assert metric(metrics_url, "notify_operator_mirrored_sites_total") >= 1
    assert metric(metrics_url, "notify_operator_reconciles_total", result="ok", trigger="create") >= 1
    assert httpx.get(op.process.health_url.replace("/healthz", "/readyz")).status_code == 200
    notify.patch(f"/api/v1/admin/sites/{site['site_name']}", json={"status": "deactivated"}, headers=ADMIN_HEADERS)
    gone = wait_for("the deletion reflected", phase_of(op, op.mirror_ns, site["site_name"], "Error"))
    assert gone["status"]["conditions"][0]["reason"] == "SiteGone"


def test_a_deletion_waits_while_notify_is_down(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    site_name = f"patient-{uuid.uuid4().hex[:8]}.example.com"
    body = {"apiVersion": "notify.dev/v1alpha1", "kind": "FrappeSite", "metadata": {"name": "patient"}}
    op.kubectl("apply", "-n", op.sites_ns, "-f", "-", stdin=json.dumps(body | {"spec": {"siteName": site_name}}))
    wait_for("patient Ready", phase_of(op, op.sites_ns, "patient", "Ready"))
    op.restart(NOTIFY_API_URL="http://127.0.0.1:9")  # notify unreachable from the operator
    op.kubectl("delete", "frappesite", "patient", "-n", op.sites_ns, "--wait=false")
    time.sleep(4)  # the finalizer ran and failed at least once
    waiting = op.frappesite(op.sites_ns, "patient")
    assert waiting["metadata"]["deletionTimestamp"] and waiting["metadata"]["finalizers"]
    assert notify.get(f"/api/v1/admin/sites/{site_name}", headers=ADMIN_HEADERS).json()["status"] == "active"
    op.restart()  # notify reachable again
    wait_for("patient gone", lambda: op.get("frappesite", op.sites_ns, "patient") is None)
    assert notify.get(f"/api/v1/admin/sites/{site_name}", headers=ADMIN_HEADERS).json()["status"] == "deactivated"


def test_deleting_deactivates_the_site_then_the_resource_goes(operator: Operator, notify: httpx.Client) -> None:
    op = operator
    key = op.secret_data(op.sites_ns, "erp-acme-notify")["NOTIFY_API_KEY"]
    assert op.frappesite(op.sites_ns, "erp-acme")["metadata"]["finalizers"] == ["notify.dev/deactivate-site"]
    op.kubectl("delete", "frappesite", "erp-acme", "-n", op.sites_ns, "--timeout=30s")
    assert op.get("frappesite", op.sites_ns, "erp-acme") is None
    site = notify.get(f"/api/v1/admin/sites/{example_site_name(op)}", headers=ADMIN_HEADERS).json()
    assert site["status"] == "deactivated"
    assert send_with(notify, key).status_code in (401, 403)


def test_with_the_default_values_its_token_reaches_the_release_namespace_only(cluster: Cluster, tmp_path: Path) -> None:
    """Issue 14: the chart's default RBAC, judged by the real server: Secrets by name in the release namespace,
    nothing in any other namespace, nothing cluster-wide."""
    run = uuid.uuid4().hex[:6]
    release_ns, elsewhere = f"notify-{run}", f"elsewhere-{run}"
    for ns in (release_ns, elsewhere):
        cluster.kubectl("create", "namespace", ns)
    rendered = render_operator(cluster, release_ns)
    assert not [d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert rendered_env(rendered, "OPERATOR_NAMESPACES") == release_ns
    token = apply_rbac(cluster, operator_objects(rendered), release_ns)
    kubeconfig = token_kubeconfig(cluster, token, tmp_path / "kubeconfig")

    def can(verb: str, resource: str, *where: str) -> bool:
        asked = cluster.run("kubectl", "--kubeconfig", kubeconfig, "auth", "can-i", verb, resource, *where, check=False)
        assert asked.stdout.strip() in ("yes", "no"), asked.stderr
        return asked.stdout.strip() == "yes"

    for verb in ("get", "create", "patch"):
        assert can(verb, "secrets", "-n", release_ns), verb
        assert not can(verb, "secrets", "-n", elsewhere), verb
    assert not can("list", "secrets", "-n", release_ns) and not can("watch", "secrets", "-n", release_ns)
    assert can("watch", "frappesites.notify.dev", "-n", release_ns)
    assert not can("watch", "frappesites.notify.dev", "-n", elsewhere)
    assert not can("list", "frappesites.notify.dev", "--all-namespaces")
    assert not can("get", "secrets", "--all-namespaces")
