"""``python -m bench [api|delivery|neighbours|events|compare|all] [--duration S] [--rev REV] [--pairs N]``: run the
benchmarks and print each figure beside its baseline; the tables are also written to bench/results/latest.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import Report


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument(
        "which", nargs="?", default="all", choices=["api", "delivery", "neighbours", "events", "compare", "all"]
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--rev", default="HEAD", help="compare: the git revision to measure the work tree against")
    parser.add_argument("--pairs", type=int, default=2, help="compare: fresh process pairs")
    args = parser.parse_args()
    reports: list[Report] = []
    if args.which in ("api", "all"):
        from bench import api

        reports.append(api.run(args.duration))
    if args.which in ("delivery", "all"):
        from bench import delivery

        reports.append(delivery.run(args.duration))
    if args.which in ("neighbours", "all"):
        from bench import neighbours

        reports.append(neighbours.run(args.duration))
    if args.which in ("events", "all"):
        from bench import events

        reports.append(events.run(args.duration))
    if args.which == "compare":  # not part of `all`: it measures a change, not the code
        from bench import compare

        reports.append(compare.run(args.duration, args.rev, args.pairs))
    out = Path(__file__).parent / "results" / "latest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(r.markdown() for r in reports))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
