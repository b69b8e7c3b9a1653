"""Every fuzz target over its seeds and over every input that once crashed it (tests/fuzz/regressions/): each
holds its contract (tests/fuzz/targets.py), so a crash fixed once stays fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).parent
INPUTS = sorted(
    (name, path)
    for name in TARGETS
    for folder in (HERE / "seeds" / name, HERE / "regressions" / name)
    if folder.is_dir()
    for path in folder.iterdir()
)


def test_every_target_has_seeds() -> None:
    assert {name for name, _ in INPUTS} == set(TARGETS)


@pytest.mark.parametrize(("name", "path"), INPUTS, ids=[f"{n}/{p.name}" for n, p in INPUTS])
def test_target_holds_its_contract(name: str, path: Path) -> None:
    TARGETS[name](path.read_bytes())
