"""Rendering the chart with the real helm, and the schemas to check what it renders.

helm and kubeconform come from `.local/bin` (built by tools/k8s/build.sh from the Go module proxy); a missing
one fails the tests, never skips them. KEDA's schemas are read from `../shared/k8s-schemas/`, Kubernetes'
from the kubernetes-validate package (offline), our other CRDs from `tests/chart/crds/`.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "notify"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
# The sandbox providers on (off by default): what dev, CI and `helm test` install. `render(DEV)` renders with it.
DEV_VALUES = CHART / "ci" / "dev-values.yaml"
DEV = (str(DEV_VALUES),)
BIN = ROOT / ".local" / "bin"
HELM = BIN / "helm"
KUBECONFORM = BIN / "kubeconform"
SHARED_SCHEMAS = ROOT.parent / "shared" / "k8s-schemas"
CRDS = Path(__file__).resolve().parent / "crds"
RELEASE = "rel"
NAMESPACE = "notify-test"
POD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def kube_version() -> str:
    """The Kubernetes version of the local toolchain (tools/k8s/versions.env), else the one the chart targets."""
    versions = ROOT / "tools" / "k8s" / "versions.env"
    if versions.exists():
        found = re.search(r"^KUBERNETES_VERSION=v?(\S+)$", versions.read_text(), re.MULTILINE)
        if found:
            return found.group(1)
    return "1.37.2"


KUBE_VERSION = kube_version()


def require(tool: Path) -> Path:
    if not tool.is_file():
        pytest.fail(f"{tool} is missing: build it with tools/k8s/build.sh (the chart tests never skip)")
    return tool


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(require(HELM)), *args], capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def template_args(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", path]
    for item in sets:
        args += ["--set", item]
    return args


@functools.cache
def render_text(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    return run_helm(*template_args(values, sets)).stdout


def render(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every object `helm template` renders (hooks and tests included)."""
    return [doc for doc in yaml.safe_load_all(render_text(values, sets)) if doc]


def render_fails(values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    result = run_helm(*template_args(values, sets), check=False)
    assert result.returncode != 0, f"the render should have failed with {sets}"
    return result.stderr


# The value sets every structural test runs over: dev (the defaults with the sandbox), production-like, and the
# other switches. The bare defaults do not render: they ask for the provider Secrets or the sandbox.
SCENARIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "dev": (DEV, ()),
    "production": ((str(PRODUCTION_VALUES),), ()),
    "no-keda": (DEV, ("keda.enabled=false",)),
    "external-ssl-only": (
        DEV,
        (
            "kafka.mode=external",
            "kafka.external.bootstrapServers=b-1.msk.example:9094",
            "kafka.external.securityProtocol=SSL",
            "kafka.external.tls.caSecret=msk-ca",
            "api.autoscaling.enabled=true",
        ),
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    values, sets = SCENARIOS[request.param]
    return render(values, sets)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def containers(obj: dict[str, Any], *, init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj)
    yield from spec["containers"]
    if init:
        yield from spec.get("initContainers", [])


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (a string) or the valueFrom mapping."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def component(obj: dict[str, Any]) -> str:
    value: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return value


# --- schemas -----------------------------------------------------------------------------------------------


def strict_crd_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """openapi2jsonschema's treatment of a CRD schema: closed objects, int-or-string as oneOf."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if isinstance(value, dict):
            out[key] = (
                strict_crd_schema(value) if key != "properties" else {k: strict_crd_schema(v) for k, v in value.items()}
            )
        elif isinstance(value, list):
            out[key] = [strict_crd_schema(v) for v in value]
        else:
            out[key] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON schema, for the CRDs vendored in tests/chart/crds."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = strict_crd_schema(version["schema"]["openAPIV3Schema"])
                found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return found


def keda_schema(kind: str) -> dict[str, Any]:
    path = SHARED_SCHEMAS / f"{kind.lower()}_v1alpha1.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: KEDA's schemas are expected in ../shared/k8s-schemas")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded
