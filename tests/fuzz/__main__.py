"""Run the fuzz targets under atheris (libFuzzer), each for a bounded time: ``python -m tests.fuzz [--seconds N]
[target ...]`` (``task fuzz``). The corpus grows in .local/fuzz/corpus/<target>; a crash is copied into
tests/fuzz/regressions/<target>/, where tests/fuzz/test_regressions.py replays it from then on (commit it with
the fix). Exit status 1 when any target crashed."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
WORK = ROOT / ".local" / "fuzz"


def fuzz(name: str, seconds: int) -> list[Path]:
    corpus, crashes = WORK / "corpus" / name, WORK / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    before = set(crashes.iterdir())
    seeds = [str(p) for p in (HERE / "seeds" / name, HERE / "regressions" / name) if p.is_dir()]
    command = [sys.executable, "-m", "tests.fuzz.one", name, f"-max_total_time={seconds}", "-timeout=10"]
    command += ["-rss_limit_mb=2048", f"-artifact_prefix={crashes}/", str(corpus), *seeds]
    print(f"fuzzing {name} for {seconds} s", flush=True)
    subprocess.run(command, cwd=ROOT, check=False)
    found = sorted(set(crashes.iterdir()) - before)
    for crash in found:
        kept = HERE / "regressions" / name / crash.name
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(crash, kept)
        print(f"{name}: crash kept as {kept.relative_to(ROOT)}", flush=True)
    return found


def main() -> int:
    from tests.fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--seconds", type=int, default=60, help="per target")
    parser.add_argument("targets", nargs="*", help=f"some of: {', '.join(TARGETS)} (default: all)")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    crashed = {name: fuzz(name, args.seconds) for name in args.targets or TARGETS}
    print("crashes:", {name: len(found) for name, found in crashed.items()}, flush=True)
    return 1 if any(crashed.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
