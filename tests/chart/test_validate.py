"""helm lint, and every rendered object validated strictly: kubeconform and kubernetes-validate (Kubernetes'
own schemas, offline), KEDA's schemas from ../shared/k8s-schemas, our other CRDs from tests/chart/crds."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.chart.conftest import (
    CHART,
    DEV,
    KUBE_VERSION,
    KUBECONFORM,
    PRODUCTION_VALUES,
    SCENARIOS,
    SHARED_SCHEMAS,
    crd_schemas,
    keda_schema,
    render,
    render_text,
    require,
    run_helm,
)

KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")


@pytest.mark.parametrize("values", [DEV, (str(PRODUCTION_VALUES),)], ids=["dev", "production"])
def test_helm_lint_strict(values: tuple[str, ...]) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", path]
    result = run_helm(*args)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_object_matches_its_schema(name: str) -> None:
    objects = render(*SCENARIOS[name])
    crds = crd_schemas()
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] in KEDA_KINDS:
            assert obj["apiVersion"] == "keda.sh/v1alpha1", where
            jsonschema.validate(obj, keda_schema(obj["kind"]))
        elif (obj["apiVersion"], obj["kind"]) in crds:
            jsonschema.validate(obj, crds[(obj["apiVersion"], obj["kind"])])
        else:
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where}: {'.'.join(map(str, exc.path))}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{where}: no schema for {obj['apiVersion']} {obj['kind']}: is it a real kind?")


# --- kubeconform --------------------------------------------------------------------------------------------


def kind_file_name(api_version: str, kind: str) -> str:
    """kubeconform's `{{.ResourceKind}}{{.KindSuffix}}.json`, also kubernetes-validate's file naming."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def refs_in(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            else:
                found |= refs_in(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs_in(value)
    return found


def self_contained(schema: dict[str, Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """kubernetes-validate's schemas point into an online `_definitions.json`: inline what they use."""
    wanted, todo = set(), refs_in(schema)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo |= refs_in(definitions[name])
    text = json.dumps({**schema, "$defs": {n: definitions[n] for n in sorted(wanted)}})
    text = text.replace('"/api/_definitions.json#/$defs/', '"#/$defs/')
    inlined: dict[str, Any] = json.loads(text)
    inlined.pop("$id", None)
    return inlined


@pytest.fixture(scope="module")
def kubeconform_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local schema folder for kubeconform: Kubernetes' kinds we render, plus our vendored CRDs."""
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    minor = ".".join(KUBE_VERSION.split(".")[:2])
    strict = sorted(source.glob(f"v{minor}.*-local-strict"))
    assert strict, f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {minor}"
    definitions = json.loads((strict[-1] / "_definitions.json").read_text())["$defs"]
    target = tmp_path_factory.mktemp("kubeconform-schemas")
    kinds = {(o["apiVersion"], o["kind"]) for name in SCENARIOS for o in render(*SCENARIOS[name])}
    crds = crd_schemas()
    for api_version, kind in kinds:
        out = target / kind_file_name(api_version, kind)
        if (api_version, kind) in crds:
            out.write_text(json.dumps(crds[(api_version, kind)]))
        elif kind not in KEDA_KINDS:
            schema = json.loads((strict[-1] / kind_file_name(api_version, kind)).read_text())
            out.write_text(json.dumps(self_contained(schema, definitions)))
    return target


def kubeconform(schemas: Path, manifests: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """kubeconform -strict over the chart's schemas (Kubernetes', KEDA's and the CRDs') and then ../shared's."""
    locations = [
        str(schemas / "{{.ResourceKind}}{{.KindSuffix}}.json"),
        str(SHARED_SCHEMAS / "{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"),
    ]
    return subprocess.run(
        [str(require(KUBECONFORM)), "-strict", "-summary", *options]
        + [arg for location in locations for arg in ("-schema-location", location)]
        + [str(manifests)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_kubeconform_strict(name: str, kubeconform_schemas: Path, tmp_path: Path) -> None:
    rendered = tmp_path / f"{name}.yaml"
    rendered.write_text(render_text(*SCENARIOS[name]))
    result = kubeconform(kubeconform_schemas, rendered, "-output", "json", "-kubernetes-version", KUBE_VERSION)
    report = json.loads(result.stdout)
    problems = [r for r in report["resources"] if r["status"] != "statusValid"]
    assert result.returncode == 0 and not problems, json.dumps(problems or report, indent=2)
    assert report["summary"]["valid"] == len(render(*SCENARIOS[name]))


def test_kubeconform_rejects_a_bad_object(kubeconform_schemas: Path, tmp_path: Path) -> None:
    """The set-up above really validates: a misspelled field in a Deployment and a number as KEDA metadata fail."""
    objects = render(DEV)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["replica"] = 2
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 50
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([deployment, scaled]))
    result = kubeconform(kubeconform_schemas, bad)
    assert result.returncode != 0
    assert re.search(r"Invalid: 2\b", result.stdout), result.stdout
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema("ScaledObject"))
