"""``python -m lib.cli`` (installed as ``notify``): operator commands run by people, Helm hooks and CI."""

from __future__ import annotations

import argparse
import sys

from lib.adapters.kafka import ensure_topics
from lib.adapters.migrate import migrate
from lib.common.settings import ConfigError, DatabaseSettings, Env, KafkaSettings
from lib.domain.errors import NotifyError
from lib.domain.vocabulary import CHANNELS


def _migrate(_args: argparse.Namespace) -> int:
    applied = migrate(DatabaseSettings.from_env(Env()).url.reveal())
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _schema(_args: argparse.Namespace) -> int:
    """Print the schema the migrations build (db/schema.sql is this output; a test keeps the two equal)."""
    from lib.adapters.migrate import dump_schema

    sys.stdout.write(dump_schema(DatabaseSettings.from_env(Env()).url.reveal()))
    return 0


def _create_topics(args: argparse.Namespace) -> int:
    created = ensure_topics(KafkaSettings.from_env(Env()), partitions=args.partitions, replication=args.replication)
    print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    return 0


def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from lib.adapters import db
    from lib.adapters.kafka import Publisher
    from lib.services import replay

    which = replay.parse_replay_filter(
        {"message_id": args.message_id, "site_name": args.site, "since": args.since, "channel": args.channel}
    )
    env = Env()

    async def run() -> list[str]:
        kafka = KafkaSettings.from_env(env)
        publisher = Publisher(kafka)
        try:
            async with db.create_pool(DatabaseSettings.from_env(env), name="cli") as pool:
                return await replay.replay(pool, publisher, kafka, which)
        finally:
            publisher.close()

    replayed = asyncio.run(run())
    print(f"replayed {len(replayed)} message(s)")
    for message_id in replayed:
        print(message_id)
    return 0


def _new_encryption_key(_args: argparse.Namespace) -> int:
    from lib.adapters.sealing import new_key

    print(new_key())
    return 0


def _reseal(_args: argparse.Namespace) -> int:
    """Key rotation: with the new key first in NOTIFY_KEY_ENCRYPTION_KEYS and the old ones after it, re-seal every
    stored provider key under the new one; then the old ones can be dropped from the list."""
    import asyncio

    from lib.adapters import db
    from lib.adapters.sealing import Sealer, encryption_keys
    from lib.services.provider_accounts import reseal_all

    env = Env()
    sealer = Sealer.of(encryption_keys(env))
    if sealer is None:
        raise ConfigError("NOTIFY_KEY_ENCRYPTION_KEYS is not set")

    async def run() -> int:
        async with db.create_pool(DatabaseSettings.from_env(env), name="cli") as pool:
            return await reseal_all(pool, sealer)

    print(f"resealed {asyncio.run(run())} provider key(s) under the first key")
    return 0


def _purge_attachments(args: argparse.Namespace) -> int:
    import asyncio

    from lib.adapters import db
    from lib.services.attachments import purge

    async def run() -> int:
        async with db.create_pool(DatabaseSettings.from_env(Env()), name="cli") as pool:
            return await purge(pool, days=args.days)

    print(f"purged {asyncio.run(run())} attachment(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply missing database migrations").set_defaults(run=_migrate)
    commands.add_parser("schema", help="print the current schema (pg_dump, normalised)").set_defaults(run=_schema)
    topics = commands.add_parser("create-topics", help="create the channel and dead-letter topics if missing")
    topics.add_argument("--partitions", type=int, default=6)
    topics.add_argument("--replication", type=int, default=1)
    topics.set_defaults(run=_create_topics)
    again = commands.add_parser("replay", help="re-enqueue dead-lettered (FAILED) messages")
    again.add_argument("--message-id")
    again.add_argument("--site", help="every FAILED message of this site (site_name)")
    again.add_argument("--since", help="FAILED since this ISO 8601 timestamp (with zone)")
    again.add_argument("--channel", choices=list(CHANNELS))
    again.set_defaults(run=_replay)
    purge = commands.add_parser("purge-attachments", help="delete the attachments no message needs any more")
    purge.add_argument("--days", type=int, default=7, help="kept this long after their last message is final")
    purge.set_defaults(run=_purge_attachments)
    commands.add_parser(
        "new-encryption-key", help="print a new key-encryption key (for NOTIFY_KEY_ENCRYPTION_KEYS)"
    ).set_defaults(run=_new_encryption_key)
    commands.add_parser(
        "reseal-provider-keys", help="re-seal every site's provider key under the first NOTIFY_KEY_ENCRYPTION_KEYS key"
    ).set_defaults(run=_reseal)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except NotifyError as exc:
        print(f"{exc.code}: {exc.message}" + (f" {exc.details}" if exc.details else ""), file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
