"""Issue 4 part 6: the chart installed into a real kube-apiserver (v1.37, built from the Go module proxy by
tools/k8s/build.sh), so every object is validated server-side, KEDA's and our CRDs' schemas included.

The control plane has no scheduler, kubelet or controller-manager: Deployments get no pods and Helm hook Jobs
never complete, so the chart is installed with ``--no-hooks``; what is checked is that the API server accepts
and stores every object the chart renders.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = ROOT / ".local" / "bin"
KUBECONFIG = ROOT / ".local" / "k8s" / "kubeconfig"
CRDS = [
    *sorted((ROOT.parent / "shared" / "k8s-schemas").glob("keda.sh_*.yaml")),
    *sorted((ROOT / "tests" / "chart" / "crds").glob("*.yaml")),
]


def run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"KUBECONFIG": str(KUBECONFIG), "PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(ROOT / ".local")}
    result = subprocess.run(list(args), capture_output=True, text=True, env=env, input=stdin, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def kubectl(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "kubectl"), *args, check=check, stdin=stdin)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    started = subprocess.run(
        ["bash", str(ROOT / "tools" / "k8s" / "control-plane.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert CRDS, "KEDA's CRDs are expected in ../shared/k8s-schemas"
    for crd in CRDS:
        kubectl("apply", "--server-side", "-f", str(crd))
    kubectl("wait", "--for", "condition=established", "crd", "--all", "--timeout=60s")
    name = f"notify-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    kubectl("-n", name, "create", "serviceaccount", "default")  # no controller-manager creates it here
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def installed_objects(release: str, namespace: str) -> list[dict[str, Any]]:
    manifest = run(str(BIN / "helm"), "get", "manifest", release, "-n", namespace).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def assert_all_stored(release: str, namespace: str) -> None:
    objects = installed_objects(release, namespace)
    assert len(objects) > 20
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        got = json.loads(
            kubectl(
                "-n",
                namespace,
                "get",
                f"{kind}.{obj['apiVersion'].split('/')[0]}" if "/" in obj["apiVersion"] else kind,
                name,
                "-o",
                "json",
            ).stdout
        )
        assert got["metadata"]["name"] == name


def test_default_values_install(namespace: str) -> None:
    run(str(BIN / "helm"), "install", "dev", str(ROOT / "charts" / "notify"), "-n", namespace, "--no-hooks")
    assert_all_stored("dev", namespace)
    kinds = {o["kind"] for o in installed_objects("dev", namespace)}
    assert {"ScaledObject", "Deployment", "StatefulSet", "NetworkPolicy", "Secret"} <= kinds
    run(str(BIN / "helm"), "uninstall", "dev", "-n", namespace)


def test_production_values_install(namespace: str) -> None:
    for secret, pairs in {
        "notify-admin": ["token=t"],
        "notify-providers": ["sendgrid-api-key=k", "wasender-api-key=k"],
        "notify-kafka-user": ["password=p"],
        "notify-db-app": ["uri=postgresql://u:p@db/notify"],
    }.items():
        kubectl("-n", namespace, "create", "secret", "generic", secret, *[f"--from-literal={p}" for p in pairs])
    values = ROOT / "charts" / "notify" / "ci" / "production-values.yaml"
    result = run(
        str(BIN / "helm"),
        "install",
        "prod",
        str(ROOT / "charts" / "notify"),
        "-n",
        namespace,
        "--no-hooks",
        "-f",
        str(values),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_all_stored("prod", namespace)
    assert "TriggerAuthentication" in {o["kind"] for o in installed_objects("prod", namespace)}


def test_the_real_server_rejects_an_invalid_scaled_object(namespace: str) -> None:
    bad = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "kafka", "metadata": {"lagThreshold": 50}}]},
    }
    result = kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(bad), check=False)
    assert result.returncode != 0 and "lagThreshold" in result.stderr
