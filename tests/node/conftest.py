"""The chart running for real on the single-node cluster of tools/k8s/node.sh (issue 16): images built here
without Docker (tools/k8s/images.sh), containerd + kubelet + kube-proxy + CoreDNS, KEDA in the cluster
(tools/k8s/keda.sh), the chart installed by helm with its embedded Kafka and PostgreSQL.

These tests run whenever the node's binaries and base images are in the machine's cache (one cold build:
`task k8s:e2e`, see tools/k8s/README.md); NOTIFY_NODE_E2E=1 (set by `task k8s:e2e`) makes them build whatever is
missing instead of skipping."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.k8s.conftest import CHART, DEV_VALUES, ROOT, Cluster, control_plane_env
from tests.k8s.conftest import wait_for as poll

K8S = ROOT / "tools" / "k8s"
NODE_VALUES = Path(__file__).with_name("values.yaml")
VOLUMES = ROOT / ".local" / "node" / "volumes"
RELEASE = "notify"
CRD = "frappesites.notify.dev"
NODE_TOOLS = (
    "etcd", "kube-apiserver", "kubectl", "helm", "kube-controller-manager", "kube-scheduler", "kubelet",
    "kube-proxy", "coredns", "keda-operator", "keda-adapter", "prometheus", "kube-state-metrics",
)  # fmt: skip
COLD_TIMEOUT_S = 3 * 3600
STEP_TIMEOUT_S = 900


def script(name: str, *args: str, timeout: float = STEP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(K8S / name), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def warm() -> bool:
    """The node's binaries and base images are built already (here or in the machine's cache)."""
    return script("build.sh", "--cached", *NODE_TOOLS).returncode == 0 and script("images.sh", "cached").returncode == 0


def must(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, f"{what} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


@pytest.fixture(scope="session")
def node() -> Iterator[Cluster]:
    """The node with KEDA, the images of this checkout imported; stopped again at the end of the session."""
    if os.environ.get("NOTIFY_NODE_E2E") != "1" and not warm():
        pytest.skip("the node e2e needs its binaries and base images built once: run `task k8s:e2e`")
    timeout = COLD_TIMEOUT_S
    must(script("build.sh", *NODE_TOOLS, timeout=timeout), "building the node's binaries")
    must(script("images.sh", "build", timeout=timeout), "building the images")
    must(script("node.sh", "start"), "starting the node")
    try:
        must(script("keda.sh", "install"), "installing KEDA")
        must(script("prometheus.sh", "start"), "starting Prometheus")
        env = control_plane_env()
        yield Cluster(kubeconfig=env["KUBECONFIG"], env={**os.environ, **env}, namespace=f"e2e-{uuid.uuid4().hex[:6]}")
    finally:
        script("prometheus.sh", "stop")
        script("node.sh", "stop")


# Each check here runs kubectl or reads the sandbox's whole listing: once a second is enough.
wait_for = functools.partial(poll, every_s=1.0)


@dataclass(frozen=True)
class Release:
    """The chart installed in its own namespace, and what the tests reach it by (Services by their ClusterIP:
    kube-proxy's rules serve this host too)."""

    cluster: Cluster
    namespace: str

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("--namespace", self.namespace, *args, check=check)

    def get(self, *args: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return found

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl("--namespace", self.namespace, "apply", "-f", "-", stdin=json.dumps(manifest))

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """helm in the release's namespace; its own `--timeout` (install, upgrade, test) bounds it, not ours."""
        command = ["helm", "--kubeconfig", self.cluster.kubeconfig, "--namespace", self.namespace, *args]
        result = subprocess.run(command, capture_output=True, text=True, env=self.cluster.env, timeout=STEP_TIMEOUT_S)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def service_url(self, component: str) -> str:
        service = self.get("service", f"{RELEASE}-{component}")
        port = service["spec"]["ports"][0]["port"]
        return f"http://{service['spec']['clusterIP']}:{port}"

    def secret(self, name: str) -> dict[str, str]:
        data = self.get("secret", name)["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret(f'{RELEASE}-secrets')['admin-token']}"}

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.service_url("api"), timeout=30)


def claim_volumes(cluster: Cluster, namespace: str, claims: list[str]) -> list[str]:
    """A hostPath PersistentVolume for each of the StatefulSets' claims, bound to it in advance: this node has no
    volume provisioner. Returns the volumes' names."""
    names = []
    for claim in claims:
        name = f"{namespace}-{claim}"
        path = VOLUMES / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # hostPath ignores fsGroup: the images' own users (999, 1000) write here
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "8Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps(volume))
        names.append(name)
    return names


def drop_crd(cluster: Cluster) -> None:
    """Delete the FrappeSite CRD and what is left of its objects: once the operator is gone nothing removes its
    finalizer from them (the chart README says so), so it is dropped here first."""
    if cluster.kubectl("get", "crd", CRD, check=False).returncode != 0:
        return
    left = json.loads(cluster.kubectl("get", "frappesites", "--all-namespaces", "-o", "json").stdout)["items"]
    for site in left:
        meta = site["metadata"]
        cluster.kubectl(
            "patch", "frappesite", meta["name"], "--namespace", meta["namespace"], "--type", "merge",
            "--patch", '{"metadata": {"finalizers": null}}', check=False,
        )  # fmt: skip
    cluster.kubectl("delete", "crd", CRD, "--wait=true", "--timeout=60s")


def install_args(*extra: str) -> list[str]:
    return [str(CHART), "--values", str(DEV_VALUES), "--values", str(NODE_VALUES), *extra]


@pytest.fixture(scope="session")
def release(node: Cluster) -> Iterator[Release]:
    """`helm install` of the chart, waited for (every Deployment and StatefulSet ready, the hook Jobs done)."""
    namespace = node.namespace
    # The FrappeSite CRD outlives an uninstall (by design, and test_uninstall checks it): one an earlier run left
    # belongs to that run's release and namespace, and Helm would refuse to adopt it.
    drop_crd(node)
    node.kubectl("create", "namespace", namespace)
    volumes = claim_volumes(node, namespace, [f"data-{RELEASE}-kafka-0", f"data-{RELEASE}-postgresql-0"])
    installed = Release(node, namespace)
    try:
        installed.helm("install", RELEASE, *install_args("--wait", "--timeout", "12m"))
        yield installed
    finally:
        installed.helm("uninstall", RELEASE, "--wait", "--timeout", "3m", check=False)
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        node.kubectl("delete", "persistentvolume", *volumes, "--wait=false", check=False)
        drop_crd(node)
        for name in volumes:
            shutil.rmtree(VOLUMES / name, ignore_errors=True)
