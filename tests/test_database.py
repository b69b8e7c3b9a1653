"""Migrations from scratch and again, concurrently; daily metrics equal to the log under concurrent writers."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from lib.adapters.migrate import available_migrations, dump_schema, migrate
from lib.domain.vocabulary import SQL_TYPES
from tests.conftest import create_database, drop_database

ROOT = Path(__file__).resolve().parent.parent

METRICS_FROM_LOG = """
SELECT site_id, (created_at AT TIME ZONE 'UTC')::date AS day, channel::text,
       count(*) AS total,
       count(*) FILTER (WHERE status = 'PENDING') AS pending,
       count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
       count(*) FILTER (WHERE status = 'SENT') AS sent,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'DELIVERED') AS delivered,
       count(*) FILTER (WHERE status = 'BOUNCED') AS bounced,
       count(*) FILTER (WHERE status = 'READ') AS read,
       count(*) FILTER (WHERE status = 'SCHEDULED') AS scheduled,
       count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled
FROM message_logs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
METRICS_TABLE = """
SELECT site_id, day, channel::text, total, pending, processing, sent, failed, delivered, bounced, read, scheduled,
       cancelled
FROM site_metrics_daily WHERE total <> 0 ORDER BY 1, 2, 3
"""


def test_migrations_apply_from_scratch_once_even_concurrently() -> None:
    name = f"notify_mig_{uuid.uuid4().hex[:8]}"
    dsn = create_database(name)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: migrate(dsn), range(4)))
        every = [m.name for m in available_migrations()]
        # each migration applied by exactly one of the four processes
        assert sorted(name for applied in results for name in applied) == sorted(every)
        assert migrate(dsn) == []  # re-applying is a no-op
        with psycopg.connect(dsn) as conn:
            recorded = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert recorded == every
        assert {"frappe_sites", "message_logs", "site_metrics_daily"} <= tables
    finally:
        drop_database(name)


def _site(conn: psycopg.Connection[Any]) -> uuid.UUID:
    site_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO frappe_sites (id, site_name, key_lookup_id, key_hash) VALUES (%s, %s, %s, 'x')",
        (site_id, f"m-{site_id.hex[:10]}", site_id.hex[:16]),
    )
    return site_id


def _writer(dsn: str, sites: list[uuid.UUID], seed: int) -> None:
    """Inserts single rows and batches, then moves statuses around, like the API and workers do."""
    rng = random.Random(seed)
    statuses = ["PROCESSING", "SENT", "FAILED", "DELIVERED", "BOUNCED", "READ", "PENDING", "SCHEDULED", "CANCELLED"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        ids = []
        for _ in range(60):
            batch = [
                (
                    uuid.uuid4(),
                    rng.choice(sites),
                    rng.choice(["email", "whatsapp"]),
                    rng.choice(["PENDING", "SCHEDULED"]),
                )
                for _ in range(rng.randint(1, 8))
            ]
            # One statement per batch, as the API's bulk insert does (the metric upserts lock in key order).
            values = ", ".join(["(%s, %s, %s, 'r', 'b', %s)"] * len(batch))
            conn.execute(
                f"INSERT INTO message_logs (id, site_id, channel, recipient, body, status) VALUES {values}",
                [v for row in batch for v in row],
            )
            ids += [b[0] for b in batch]
            picked = rng.sample(ids, min(len(ids), 5))
            conn.execute(
                "UPDATE message_logs SET status = %s::message_status WHERE id = ANY(%s)", (rng.choice(statuses), picked)
            )
            conn.execute("UPDATE message_logs SET attempts = attempts + 1 WHERE id = %s", (rng.choice(ids),))
        conn.execute("DELETE FROM message_logs WHERE id = ANY(%s)", (ids[:3],))


def test_daily_metrics_equal_the_log_after_a_concurrent_burst(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        sites = [_site(conn) for _ in range(3)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda seed: _writer(pg_dsn, sites, seed), range(8)))
    with psycopg.connect(pg_dsn) as conn:
        from_log = [r for r in conn.execute(METRICS_FROM_LOG).fetchall() if r[0] in sites]
        table = [r for r in conn.execute(METRICS_TABLE).fetchall() if r[0] in sites]
    assert len(from_log) >= 2  # several (site, day, channel) groups were written
    assert table == from_log
    assert any(r[6] for r in table) and any(r[7] for r in table)  # statuses really moved
    assert any(r[11] for r in table) and any(r[12] for r in table)  # the scheduled sends' two


def test_the_vocabulary_mirrors_the_sql_enums(pg_dsn: str) -> None:
    """Channel, MessageStatus and SiteStatus name exactly the labels of their PostgreSQL ENUMs, in order."""
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute(
            "SELECT t.typname, e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
            " ORDER BY t.typname, e.enumsortorder"
        ).fetchall()
    in_sql: dict[str, list[str]] = {}
    for type_name, label in rows:
        in_sql.setdefault(type_name, []).append(label)
    assert in_sql == {name: [m.value for m in enum] for name, enum in SQL_TYPES.items()}


def test_db_schema_sql_is_what_the_migrations_build(pg_dsn: str) -> None:
    """db/schema.sql is the schema to read; the migrations are the truth. `python -m lib.cli schema` regenerates it."""
    kept = (ROOT / "db" / "schema.sql").read_text().splitlines()
    assert dump_schema(pg_dsn) == "\n".join(line for line in kept if not line.startswith("--")) + "\n"
