"""Rules of the code base that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from lib.delivery.channels import DELIVERY
from lib.domain.channels import RULES
from lib.domain.vocabulary import Channel

ROOT = Path(__file__).resolve().parents[2]
DEPLOYABLES = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "__init__.py").exists())
ENV_READ = re.compile(r'env\.(?:text|secret|integer|number|flag)\("([A-Z0-9_]+)"')


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_deployables_import_lib_never_each_other() -> None:
    assert {"api", "email", "whatsapp", "sandbox"} <= set(DEPLOYABLES)
    for name in DEPLOYABLES:
        for path in (ROOT / "functions" / name).rglob("*.py"):
            others = {
                m
                for m in imported_modules(path)
                if m.startswith("functions.") and not m.startswith(f"functions.{name}")
            }
            assert not others, f"{path.relative_to(ROOT)} imports {others}"
    for path in (ROOT / "lib").rglob("*.py"):
        assert not {m for m in imported_modules(path) if m.startswith("functions")}, path


def test_a_channel_is_one_entry_in_each_registry_and_a_thin_deployable() -> None:
    """Validation's rules, the worker's provider and rate, and an entry point that only names its channel."""
    assert set(RULES) == set(DELIVERY) == set(Channel)
    for channel in Channel:
        deployable = ROOT / "functions" / channel.value
        assert sorted(p.name for p in deployable.glob("*.py")) == ["__init__.py", "__main__.py"], deployable
        entry = (deployable / "__main__.py").read_text()
        assert f"main(Channel.{channel.name})" in entry
        assert {m for m in imported_modules(deployable / "__main__.py") if m.startswith("lib")} == {
            "lib.delivery.worker",
            "lib.domain.vocabulary",
        }


# Each layer of lib/ and what it may import of notify (besides itself).
LAYERS = {
    "common": set(),
    "domain": {"lib.common"},
    "adapters": {"lib.common", "lib.domain"},
    "services": {"lib.common", "lib.domain", "lib.adapters"},
    "delivery": {"lib.common", "lib.domain", "lib.adapters"},
}
# The API side and the worker side never import each other.
SIDES = {"api": "lib.delivery", **{channel.value: "lib.services" for channel in Channel}}


def notify_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m == "lib" or m.startswith(("lib.", "functions."))}


def test_lib_is_in_layers_that_import_only_downwards() -> None:
    assert {p.name for p in (ROOT / "lib").iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)
    for layer, allowed in LAYERS.items():
        for path in (ROOT / "lib" / layer).rglob("*.py"):
            wrong = {m for m in notify_imports(path) if not m.startswith((f"lib.{layer}", *allowed)) or m == "lib"}
            assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports {sorted(wrong)}"


def test_the_api_side_and_the_worker_side_never_import_each_other() -> None:
    for deployable, forbidden in SIDES.items():
        for path in (ROOT / "functions" / deployable).rglob("*.py"):
            wrong = {m for m in notify_imports(path) if m.startswith(forbidden)}
            assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_every_setting_is_in_the_readme_table() -> None:
    read = {
        m for p in [*ROOT.glob("lib/**/*.py"), *ROOT.glob("functions/**/*.py")] for m in ENV_READ.findall(p.read_text())
    }
    table = ROOT.joinpath("README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert len(read) > 40
    missing = sorted(v for v in read if f"`{v}`" not in table)
    assert not missing, f"not in the README's configuration table: {missing}"


def test_sql_lives_in_db_files() -> None:
    """Queries are named in db/queries; code refers to them by name. The migration runner keeps its own
    bookkeeping table, which must exist before any migration, and is the one exception."""
    for path in (ROOT / "lib").rglob("*.py"):
        if path.name == "migrate.py":
            continue
        text = path.read_text()
        assert not re.search(r'"\s*(UPDATE|INSERT INTO|DELETE FROM)\s', text), f"inline SQL in {path.relative_to(ROOT)}"


SERVICE_FIXTURES = {"pg_dsn", "kafka_settings", "api_url", "client", "site", "stack", "sandbox", "pool"}


def test_the_unit_suite_needs_no_service() -> None:
    """tests/unit runs on a fresh clone with no PostgreSQL, Kafka or Go toolchain (`task test:unit`)."""
    for path in (ROOT / "tests" / "unit").glob("test_*.py"):
        tests = [
            n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for test in (t for t in tests if t.name.startswith("test_")):
            wanted = {a.arg for a in test.args.args}
            assert not wanted & SERVICE_FIXTURES, f"{path.name}::{test.name} asks for {sorted(wanted)}"
