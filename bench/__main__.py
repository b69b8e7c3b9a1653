"""``python -m bench [api|delivery|neighbours|all] [--duration S]``: run the benchmarks and print each figure beside its
baseline; the markdown tables are also written to bench/results/latest.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import Report


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("which", nargs="?", default="all", choices=["api", "delivery", "neighbours", "all"])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
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
    out = Path(__file__).parent / "results" / "latest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(r.markdown() for r in reports))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
