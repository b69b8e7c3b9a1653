"""Issue 4 part 6: the chart installed into a real kube-apiserver, so every object is validated server-side.

kube-apiserver v1.37.2, etcd, kubectl and helm are built from the Go module proxy into `.local/bin` by
`tools/k8s/build.sh`; `tools/k8s/control-plane.sh start` builds what is missing (about 7.5 min cold, 0.2 s
when cached) and starts etcd + kube-apiserver on loopback. A missing binary is built, never skipped.

KEDA's CRDs (v2.20.2, `../shared/k8s-schemas/keda.sh_*.yaml`) and the ServiceMonitor CRD the chart tests vendor
(`tests/chart/crds/`) are installed with server-side apply, so ScaledObjects, TriggerAuthentications and
ServiceMonitors are checked against their real OpenAPI schemas by the server.

This control plane has no scheduler, controller-manager or kubelet: Deployments never get pods and a Helm hook
Job never completes, so the releases are installed with `--no-hooks` (with hooks, helm would wait for the
migrations/topics Jobs forever). What is asserted is that the API server accepts and stores every object the
chart renders, as rendered (no field silently pruned by a schema).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.k8s.conftest import CHART, DEV_VALUES, ROOT, Cluster

PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
FRAPPESITES_CRD = "customresourcedefinition/frappesites.notify.dev"

# The Secrets ci/production-values.yaml names (`existingSecret`s, the Kafka CA, the Ingress TLS), with dummy
# values: the chart only references them, it never creates them.
PRODUCTION_SECRETS: dict[str, dict[str, str]] = {
    "notify-admin": {"token": "dummy-admin-token"},
    "notify-providers": {"sendgrid-api-key": "SG.dummy", "wasender-api-key": "dummy"},
    "notify-kafka-user": {"password": "dummy"},
    "notify-db-app": {"uri": "postgresql://notify:dummy@db.example:5432/notify"},
    "kafka-cluster-ca-cert": {"ca.crt": "dummy"},
}


def manifest_objects(cluster: Cluster, release: str) -> list[dict[str, Any]]:
    manifest = cluster.helm("get", "manifest", release).stdout
    return [doc for doc in yaml.safe_load_all(manifest) if doc]


def resource_arg(obj: dict[str, Any]) -> str:
    """`Kind.version.group/name` (`Kind/name` for the core group): unambiguous for kubectl."""
    api_version: str = obj["apiVersion"]
    group, _, version = api_version.rpartition("/")
    return f"{obj['kind']}{f'.{version}.{group}' if group else ''}/{obj['metadata']['name']}"


def stored_objects(cluster: Cluster, objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The objects as the API server stores them, fetched with one `kubectl get -o json kind/name ...`."""
    got = json.loads(
        cluster.kubectl("--namespace", cluster.namespace, "get", "-o", "json", *map(resource_arg, objects)).stdout
    )
    items = got["items"] if got.get("kind") == "List" else [got]
    return {(o["apiVersion"], o["kind"], o["metadata"]["name"]): o for o in items}


# Empty values the API server drops when it serializes (Go's `omitempty`), e.g. an env var's `value: ""`.
OMITTED_WHEN_EMPTY: list[Any] = ["", None, {}, []]


def not_stored(rendered: Any, stored: Any, path: str = "") -> list[str]:
    """Paths where a rendered value is not in the stored object: pruned by a schema, or changed by the server."""
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return [f"{path}: rendered a mapping, stored {stored!r}"]
        return [
            problem
            for key, value in rendered.items()
            for problem in (
                not_stored(value, stored[key], f"{path}.{key}")
                if key in stored
                else []
                if value in OMITTED_WHEN_EMPTY
                else [f"{path}.{key}: pruned"]
            )
        ]
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return [f"{path}: rendered {rendered!r}, stored {stored!r}"]
        return [
            p for i, (r, s) in enumerate(zip(rendered, stored, strict=True)) for p in not_stored(r, s, f"{path}[{i}]")
        ]
    return [] if rendered == stored else [f"{path}: rendered {rendered!r}, stored {stored!r}"]


def assert_release_stored(cluster: Cluster, release: str) -> list[dict[str, Any]]:
    objects = manifest_objects(cluster, release)
    assert objects, f"helm get manifest {release} is empty"
    stored = stored_objects(cluster, objects)
    problems = []
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        found = stored.get(key)
        if found is None:
            problems.append(f"{key}: not in the API server")
            continue
        # cluster-scoped objects (the CRD, the operator's ClusterRole and binding) have no namespace
        assert found["metadata"].get("namespace", cluster.namespace) == cluster.namespace, key
        assert found["metadata"]["annotations"]["meta.helm.sh/release-name"] == release, key
        rendered = {k: v for k, v in obj.items() if k not in ("metadata", "stringData")}
        problems += [f"{obj['kind']}/{obj['metadata']['name']}{p}" for p in not_stored(rendered, found)]
    assert not problems, "objects not stored as rendered:\n" + "\n".join(problems)
    return objects


def install(cluster: Cluster, release: str, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-hooks: no kubelet runs the migrations/topics hook Jobs, so helm would wait for them forever.
    result = cluster.helm("install", release, str(CHART), "--no-hooks", "--timeout", "60s", *args, check=False)
    assert result.returncode == 0, f"helm install {release} exited {result.returncode}:\n{result.stderr}"
    assert "unknown field" not in result.stderr, result.stderr  # the server's warning for a pruned field
    return result


def kinds(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    return found


@pytest.fixture(scope="session")
def default_release(cluster: Cluster) -> Iterator[str]:
    install(cluster, "dev", "--values", str(DEV_VALUES))
    yield "dev"
    cluster.helm("uninstall", "dev", "--ignore-not-found", check=False)


def forget_kept_crd(cluster: Cluster) -> None:
    """The FrappeSite CRD outlives `helm uninstall` (resource-policy keep) and this server's etcd outlives a test
    session: a CRD left by an earlier session belongs to that release, and helm refuses to adopt it. Delete it,
    after lifting the finalizers of FrappeSites no operator is running for (they would hold the deletion)."""
    listed = cluster.kubectl("get", "frappesites.notify.dev", "-A", "-o", "json", check=False)
    for item in json.loads(listed.stdout)["items"] if listed.returncode == 0 else []:
        meta = item["metadata"]
        lift = ["patch", "frappesite", meta["name"], "-n", meta["namespace"], "--type", "merge"]
        cluster.kubectl(*lift, "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("delete", FRAPPESITES_CRD, "--ignore-not-found", "--timeout=60s")


@pytest.fixture(scope="session")
def production_release(cluster: Cluster) -> Iterator[str]:
    for name, data in PRODUCTION_SECRETS.items():
        literals = [f"--from-literal={key}={value}" for key, value in data.items()]
        cluster.kubectl("--namespace", cluster.namespace, "create", "secret", "generic", name, *literals)
    tls = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "notify-example-com-tls"},  # cert-manager's, for the Ingress
        "stringData": {"tls.crt": "dummy", "tls.key": "dummy"},
    }
    cluster.kubectl("--namespace", cluster.namespace, "create", "-f", "-", stdin=json.dumps(tls))
    forget_kept_crd(cluster)
    install(cluster, "prod", "--values", str(PRODUCTION_VALUES))
    yield "prod"
    cluster.helm("uninstall", "prod", "--ignore-not-found", check=False)


def test_the_server_is_the_pinned_kubernetes(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    pinned = re.search(r"^KUBERNETES_VERSION=(\S+)$", (ROOT / "tools/k8s/versions.env").read_text(), re.MULTILINE)
    assert pinned and version == pinned.group(1)


def test_a_plain_install_is_refused_until_the_providers_or_the_sandbox_are_chosen(cluster: Cluster) -> None:
    result = cluster.helm("install", "plain", str(CHART), "--no-hooks", "--timeout", "60s", check=False)
    assert result.returncode != 0
    assert "email.sendgrid.existingSecret" in result.stderr and "sandbox.enabled=true" in result.stderr
    assert "plain" not in cluster.helm("list", "--all", "--short").stdout.split()


def test_dev_values_are_all_stored(cluster: Cluster, default_release: str) -> None:
    objects = assert_release_stored(cluster, default_release)
    found = kinds(objects)
    assert "dev-notify-sandbox" in found["Deployment"]
    assert {"Deployment", "StatefulSet", "Service", "NetworkPolicy", "Secret", "ConfigMap"} <= found.keys()
    assert sorted(found["ScaledObject"]) == ["dev-notify-email", "dev-notify-whatsapp"]
    assert "TriggerAuthentication" not in found  # embedded Kafka: no SASL/TLS


def test_production_values_are_all_stored(cluster: Cluster, production_release: str) -> None:
    objects = assert_release_stored(cluster, production_release)
    found = kinds(objects)
    assert {"Ingress", "PodDisruptionBudget", "ServiceMonitor", "TriggerAuthentication"} <= found.keys()
    assert sorted(found["ScaledObject"]) == ["prod-notify-email", "prod-notify-whatsapp"]
    assert "StatefulSet" not in found  # external Kafka and PostgreSQL


def test_the_server_rejects_an_invalid_scaled_object(cluster: Cluster, default_release: str) -> None:
    good = next(o for o in manifest_objects(cluster, default_release) if o["kind"] == "ScaledObject")
    good["metadata"] = {"name": "invalid-lag-threshold"}
    # first the chart's own ScaledObject under another name: accepted (dry run), so the rejection below is the
    # numeric lagThreshold and nothing else
    cluster.kubectl("--namespace", cluster.namespace, "create", "--dry-run=server", "-f", "-", stdin=json.dumps(good))
    trigger = good["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and isinstance(trigger["metadata"]["lagThreshold"], str)
    trigger["metadata"]["lagThreshold"] = 50  # KEDA's schema: trigger metadata values are strings
    # --validate=false: kubectl sends the object as is, only the server's CRD schema judges it
    result = cluster.kubectl(
        "--namespace", cluster.namespace, "create", "--validate=false", "-f", "-", stdin=json.dumps(good), check=False
    )
    assert result.returncode != 0, result.stdout
    assert "lagThreshold" in result.stderr and "must be of type string" in result.stderr, result.stderr
    absent = cluster.kubectl(
        "--namespace", cluster.namespace, "get", "scaledobject.keda.sh", "invalid-lag-threshold", check=False
    )
    assert absent.returncode != 0 and "NotFound" in absent.stderr


def test_helm_uninstall_removes_the_releases(cluster: Cluster, default_release: str, production_release: str) -> None:
    for release in (default_release, production_release):
        objects = manifest_objects(cluster, release)
        cluster.helm("uninstall", release)
        kept = [o for o in objects if o["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"]
        gone = [o for o in objects if o not in kept]
        left = cluster.kubectl(
            "--namespace", cluster.namespace, "get", "--ignore-not-found", "-o", "name", *map(resource_arg, gone)
        ).stdout.split()
        assert not left, f"{release}: left after helm uninstall: {left}"
        # generated Secrets (admin token, DB password) survive an uninstall on purpose
        if kept:
            still = cluster.kubectl(
                "--namespace", cluster.namespace, "get", "-o", "name", *map(resource_arg, kept)
            ).stdout.split()
            assert len(still) == len(kept)
    assert cluster.helm("list", "--all", "--short").stdout.strip() == ""
