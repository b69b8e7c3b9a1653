"""The real kube-apiserver the k8s tests share (one per test session): tools/k8s/control-plane.sh starts etcd and
kube-apiserver on loopback, building them from the Go module proxy if missing (a missing binary is built, never
skipped); KEDA's CRDs and the ServiceMonitor CRD are installed; each session gets its own namespace."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTROL_PLANE = ROOT / "tools" / "k8s" / "control-plane.sh"
BUILD = ROOT / "tools" / "k8s" / "build.sh"
CHART = ROOT / "charts" / "notify"
# The defaults with the sandbox providers on (the bare defaults ask for the real providers' Secrets).
DEV_VALUES = CHART / "ci" / "dev-values.yaml"
KEDA_CRDS = ROOT.parent / "shared" / "k8s-schemas"
OUR_CRDS = ROOT / "tests" / "chart" / "crds"
BUILD_TIMEOUT = 3600  # a cold build of the toolchain takes about 7.5 min on 2 cores
COMMAND_TIMEOUT = 120


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    env: dict[str, str]
    namespace: str

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{shlex.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", "--kubeconfig", self.kubeconfig, *args, stdin=stdin, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", "--kubeconfig", self.kubeconfig, "--namespace", self.namespace, *args, check=check)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0, every_s: float = 0.2) -> Any:
    """check() every `every_s` until it returns something true (returned), or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def control_plane(command: str, timeout: int = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CONTROL_PLANE), command], capture_output=True, text=True, timeout=timeout, check=False
    )


def control_plane_env() -> dict[str, str]:
    """KUBECONFIG and PATH as `control-plane.sh env` prints them (`export NAME="value"` lines)."""
    out = control_plane("env")
    assert out.returncode == 0, out.stderr
    exported = dict(re.findall(r'^export (\w+)="(.*)"$', out.stdout, re.MULTILINE))
    path = exported["PATH"].replace("$PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    return {"KUBECONFIG": exported["KUBECONFIG"], "PATH": path}


def crd_files() -> list[Path]:
    files = [*sorted(KEDA_CRDS.glob("keda.sh_*.yaml")), *sorted(OUR_CRDS.glob("*.yaml"))]
    names = {f.name for f in files}
    assert {"keda.sh_scaledobjects.yaml", "keda.sh_triggerauthentications.yaml"} <= names, f"KEDA CRDs in {KEDA_CRDS}"
    assert "monitoring.coreos.com_servicemonitors.yaml" in names, f"ServiceMonitor CRD in {OUR_CRDS}"
    return files


def crd_names(files: list[Path]) -> list[str]:
    return [
        doc["metadata"]["name"]
        for f in files
        for doc in yaml.safe_load_all(f.read_text())
        if doc and doc.get("kind") == "CustomResourceDefinition"
    ]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    was_running = control_plane("status").returncode == 0
    try:
        # builds etcd, kube-apiserver and kubectl if missing; idempotent when already running
        started = control_plane("start", timeout=BUILD_TIMEOUT)
        assert started.returncode == 0, f"control-plane.sh start failed:\n{started.stdout}\n{started.stderr}"
        helm = subprocess.run(
            ["bash", str(BUILD), "helm"], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
        assert helm.returncode == 0, f"tools/k8s/build.sh helm failed:\n{helm.stderr}"

        home = tmp_path_factory.mktemp("k8s-home")
        env = {
            **os.environ,
            **control_plane_env(),
            # kubectl's discovery cache and helm's state stay in this session's temporary folder
            "KUBECACHEDIR": str(home / "kube-cache"),
            "HELM_CACHE_HOME": str(home / "helm-cache"),
            "HELM_CONFIG_HOME": str(home / "helm-config"),
            "HELM_DATA_HOME": str(home / "helm-data"),
        }
        env.pop("HELM_NAMESPACE", None)
        env.pop("HELM_KUBECONTEXT", None)
        namespace = f"notify-{uuid.uuid4().hex[:8]}"
        cluster = Cluster(kubeconfig=env["KUBECONFIG"], env=env, namespace=namespace)

        files = crd_files()
        applied = ["apply", "--server-side", "--force-conflicts", "--field-manager", "notify-tests"]
        cluster.kubectl(*applied, *[arg for f in files for arg in ("-f", str(f))])
        names = [f"crd/{name}" for name in crd_names(files)]
        cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", *names)

        # A namespace per run: a deleted namespace stays Terminating forever here (no namespace controller).
        cluster.kubectl("create", "namespace", namespace)
        # No controller-manager creates the `default` ServiceAccount. The chart's workloads name their own and
        # its only bare Pod is a `helm test` hook (not installed), so nothing needs it; a real namespace has it.
        cluster.kubectl("--namespace", namespace, "create", "serviceaccount", "default")
        yield cluster
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    finally:
        if not was_running:  # stop the control plane only if this session started it
            control_plane("stop", timeout=60)
