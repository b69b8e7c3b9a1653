"""skaffold.yaml and Taskfile.chart.yml: valid against the shared schemas, and consistent with the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, DEV_VALUES, PRODUCTION_VALUES, ROOT, SHARED_SCHEMAS


def schema(name: str) -> dict[str, Any]:
    path = SHARED_SCHEMAS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the shared schemas are expected in ../shared/k8s-schemas")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def errors(document: Any, against: dict[str, Any]) -> list[str]:
    validator = jsonschema.validators.validator_for(against)(against)
    return [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(document)]


SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
TASKFILE = yaml.safe_load((ROOT / "Taskfile.chart.yml").read_text())


def test_skaffold_yaml_is_valid_v4beta14() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    assert errors(SKAFFOLD, schema("skaffold-v4beta14.schema.json")) == []
    # The schema is strict: a misspelled field is refused (so the check above means something).
    broken = json.loads(json.dumps(SKAFFOLD))
    broken["deploy"]["helm"]["releases"][0]["chartPth"] = "charts/notify"
    assert errors(broken, schema("skaffold-v4beta14.schema.json"))


def test_skaffold_builds_each_deployable_and_wires_its_image_into_the_chart() -> None:
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert Path(ROOT / release["chartPath"]) == CHART
    for name in ("api", "email", "whatsapp", "sandbox"):
        artifact = artifacts[f"notify-{name}"]
        assert artifact["context"] == "."
        assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
        assert artifact["docker"]["buildArgs"] == {"DEPLOYABLE": name}  # the one Dockerfile, for this deployable
        path = f"workers.{name}" if name in values["workers"] else name  # a channel worker is an entry of `workers`
        component = values["workers"][name] if name in values["workers"] else values[name]
        assert component["image"]["repository"] == f"notify-{name}"
        templates = release["setValueTemplates"]
        assert templates[f"{path}.image.repository"] == f"{{{{.IMAGE_REPO_notify_{name}}}}}"
        assert templates[f"{path}.image.tag"] == f"{{{{.IMAGE_TAG_notify_{name}}}}}"
    assert {p["name"] for p in SKAFFOLD["profiles"]} == {"dev", "prod"}
    (forward,) = SKAFFOLD["portForward"]
    assert forward["resourceName"] == "notify-api" and forward["port"] == values["api"]["service"]["port"]


def test_every_profile_builds_each_image_from_the_one_dockerfile() -> None:
    builds = [SKAFFOLD["build"], *(p["build"] for p in SKAFFOLD["profiles"] if "build" in p)]
    for build in builds:
        for artifact in build["artifacts"]:
            name = artifact["image"].removeprefix("notify-")
            assert artifact["docker"]["dockerfile"] == "Dockerfile" and artifact["context"] == "."
            assert artifact["docker"]["buildArgs"] == {"DEPLOYABLE": name}
            assert (ROOT / "functions" / name / "__main__.py").is_file()


def test_taskfile_chart_is_valid_and_has_the_chart_tasks() -> None:
    assert errors(TASKFILE, schema("taskfile-v3.schema.json")) == []
    wanted = {"chart:lint", "chart:template", "chart:validate", "k8s:up", "kind:up", "kind:deploy"}
    assert wanted <= set(TASKFILE["tasks"])
    for name in wanted:
        assert TASKFILE["tasks"][name].get("desc"), f"{name} has no desc"


def test_the_dev_installs_ask_for_the_sandbox_and_the_prod_one_does_not() -> None:
    # The sandbox is off by default: every dev install turns it on itself, and the bare defaults are never linted
    # or rendered by a task (they do not render).
    profiles = {p["name"]: p for p in SKAFFOLD["profiles"]}
    dev_values = next(op["value"] for op in profiles["dev"]["patches"] if op["path"].endswith("/setValues"))
    assert dev_values["sandbox.enabled"] is True
    prod_files = next(op["value"] for op in profiles["prod"]["patches"] if op["path"].endswith("/valuesFiles"))
    assert [ROOT / f for f in prod_files] == [PRODUCTION_VALUES]
    assert yaml.safe_load(PRODUCTION_VALUES.read_text())["sandbox"]["enabled"] is False
    assert yaml.safe_load(DEV_VALUES.read_text())["sandbox"]["enabled"] is True
    cmds = [c for name in ("chart:lint", "chart:template") for c in TASKFILE["tasks"][name]["cmds"]]
    helm_commands = [c for c in cmds if isinstance(c, str) and ('helm" lint ' in c or 'helm" template ' in c)]
    assert len(helm_commands) == 4
    for cmd in helm_commands:
        assert "--values" in cmd, f"Taskfile.chart.yml renders the bare defaults: {cmd}"
