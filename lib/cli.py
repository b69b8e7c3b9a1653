"""``python -m lib.cli`` (installed as ``notify``): operator commands run by people, Helm hooks and CI."""

from __future__ import annotations

import argparse
import sys

from lib.kafka import ensure_topics
from lib.migrate import migrate
from lib.settings import ConfigError, DatabaseSettings, Env, KafkaSettings


def _migrate(_args: argparse.Namespace) -> int:
    applied = migrate(DatabaseSettings.from_env(Env()).url.reveal())
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    created = ensure_topics(KafkaSettings.from_env(Env()), partitions=args.partitions, replication=args.replication)
    print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply missing database migrations").set_defaults(run=_migrate)
    topics = commands.add_parser("create-topics", help="create the channel and dead-letter topics if missing")
    topics.add_argument("--partitions", type=int, default=6)
    topics.add_argument("--replication", type=int, default=1)
    topics.set_defaults(run=_create_topics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
