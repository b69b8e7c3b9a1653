"""One target under atheris, with coverage of lib/ (``python -m tests.fuzz.one TARGET [libFuzzer flags]``)."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["lib", "tests.fuzz"]):
    from tests.fuzz.targets import TARGETS


def main() -> None:
    name, flags = sys.argv[1], sys.argv[2:]
    atheris.Setup([sys.argv[0], *flags], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
