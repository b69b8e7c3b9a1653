"""k8s/keda-scalers/ (plain manifests for installs without the chart) say what the chart renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.chart.conftest import ROOT, keda_schema, render

SCALERS = ROOT / "k8s" / "keda-scalers"


def comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """Kind, name and spec: labels differ on purpose (no Helm labels in the plain files)."""
    return {"kind": obj["kind"], "name": obj["metadata"]["name"], "spec": obj["spec"]}


def plain_manifests() -> list[dict[str, Any]]:
    found = []
    for path in sorted(SCALERS.glob("*.yaml")):
        if path.name != "chart-values.yaml":
            found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def test_plain_manifests_equal_the_chart_rendering() -> None:
    rendered = [o for o in render((str(SCALERS / "chart-values.yaml"),)) if o["apiVersion"].startswith("keda.sh/")]
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert [comparable(o) for o in sorted(plain_manifests(), key=key)] == [
        comparable(o) for o in sorted(rendered, key=key)
    ]


def test_plain_manifests_match_kedas_schemas() -> None:
    manifests = plain_manifests()
    assert {o["kind"] for o in manifests} == {"ScaledObject", "TriggerAuthentication"}
    for obj in manifests:
        jsonschema.validate(obj, keda_schema(obj["kind"]))
        for trigger in obj["spec"].get("triggers", []):
            assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_readme_lists_every_file() -> None:
    readme = (SCALERS / "README.md").read_text()
    for path in Path(SCALERS).glob("*.yaml"):
        assert f"`{path.name}`" in readme
