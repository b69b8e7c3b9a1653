"""`helm install` of the chart on a real node: every pod Running and Ready, the hook Jobs Completed, `helm test`
passing, a FrappeSite registered by the operator in the cluster and its key delivering through the API Service to
the sandbox pod; then `helm upgrade` and `helm uninstall` as the chart README says."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.node.conftest import RELEASE, Release, wait_for


def pods(release: Release) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = release.get("pods")["items"]
    return found


def ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True"


def owner_kind(pod: dict[str, Any]) -> str:
    owners = pod["metadata"].get("ownerReferences") or [{}]
    return str(owners[0].get("kind", ""))


def finished_by_design(pod: dict[str, Any]) -> bool:
    """A hook Job's pod, or the `helm test` pod: each runs to completion."""
    hook = pod["metadata"].get("annotations", {}).get("helm.sh/hook")
    return pod["status"].get("phase") == "Succeeded" and (owner_kind(pod) == "Job" or hook == "test")


def component(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def test_every_pod_runs_ready_and_the_hook_jobs_completed(release: Release) -> None:
    running = pods(release)
    not_ready = [p["metadata"]["name"] for p in running if not ready(p) and not finished_by_design(p)]
    assert not not_ready, f"pods not Running and Ready: {not_ready}"
    components = {component(p) for p in running if ready(p)}
    assert {"api", "kafka", "postgresql", "sandbox", "operator"} <= components, components
    jobs = release.get("jobs")["items"]
    names = {j["metadata"]["name"]: j["status"].get("succeeded", 0) for j in jobs}
    # the migrations and topics hooks: kept until the next upgrade replaces them
    assert all(done >= 1 for done in names.values()), names
    history = release.helm("history", RELEASE, "--output", "json").stdout
    assert '"status":"deployed"' in history.replace(" ", ""), history


def test_helm_test_passes(release: Release) -> None:
    result = release.helm("test", RELEASE, "--timeout", "5m", "--logs", check=False)
    assert result.returncode == 0, f"helm test failed:\n{result.stdout}\n{result.stderr}"
    assert "Phase:          Succeeded" in result.stdout, result.stdout
    assert "is SENT" in result.stdout, result.stdout  # the smoke test's own log line, read back by --logs


def test_a_frappesite_gets_a_key_that_sends_through_the_api_service(release: Release) -> None:
    name = f"site-{uuid.uuid4().hex[:6]}"
    site_name = f"{name}.example.com"
    manifest = {
        "apiVersion": "notify.dev/v1alpha1",
        "kind": "FrappeSite",
        "metadata": {"name": name},
        "spec": {"siteName": site_name, "siteUrl": f"https://{site_name}", "enabledChannels": ["email"]},
    }
    release.apply(manifest)
    phase = wait_for(
        "the FrappeSite to be Ready",
        lambda: release.get("frappesite", name).get("status", {}).get("phase") == "Ready",
        timeout_s=120,
    )
    assert phase
    secret = release.secret(f"{name}-notify")
    assert secret["NOTIFY_SITE_NAME"] == site_name
    recipient = f"{name}@example.com"
    with release.api() as api:
        sent = api.post(
            "/api/v1/notifications/send",
            headers={"X-Site-Key": secret["NOTIFY_API_KEY"]},
            json={"channel": "email", "recipient": recipient, "subject": "node e2e", "body": "through the Service"},
        )
        assert sent.status_code == 202, sent.text
        message_id = sent.json()["message_id"]

        def status() -> str | None:
            got = api.get(f"/api/v1/notifications/{message_id}", headers={"X-Site-Key": secret["NOTIFY_API_KEY"]})
            value = got.json()["status"]
            return value if value in {"SENT", "FAILED"} else None

        assert wait_for("the message to end", status, timeout_s=120) == "SENT"
    with httpx.Client(base_url=release.service_url("sandbox"), timeout=10) as sandbox:
        received = sandbox.get("/_sandbox/messages", params={"provider": "sendgrid"}).json()["items"]
    assert [m for m in received if recipient in m.get("to", [])], "the sandbox pod never received the email"
