"""`helm uninstall` as the chart README says (runs last: the file sorts after the others): the release's
workloads go, the generated Secret (admin token, database password, sandbox keys) and the FrappeSite CRD stay.
Helm never deletes hook resources on uninstall: what is left of them is the finished hook Jobs and the `helm test`
pod (kept so that `helm test --logs` can read it), nothing that runs."""

from __future__ import annotations

from tests.node.conftest import RELEASE, Release, wait_for


def test_uninstall_keeps_the_generated_secret_and_the_crd(release: Release) -> None:
    secret_before = release.secret(f"{RELEASE}-secrets")
    release.helm("uninstall", RELEASE, "--wait", "--timeout", "3m")
    wait_for("the release's running pods to go", lambda: not running_pods(release), timeout_s=120)
    assert not release.get("deployments")["items"]
    assert not release.get("statefulsets")["items"]
    assert release.secret(f"{RELEASE}-secrets") == secret_before
    crd = release.cluster.kubectl("get", "crd", "frappesites.notify.dev", "-o", "name", check=False)
    assert crd.returncode == 0, crd.stderr


def running_pods(release: Release) -> list[str]:
    return [p["metadata"]["name"] for p in release.get("pods")["items"] if p["status"].get("phase") != "Succeeded"]
