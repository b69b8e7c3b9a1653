"""PostgreSQL access: the connection pool and the named queries kept in ``db/queries/*.sql``."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any, cast

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lib.common.settings import DatabaseSettings
from lib.domain.errors import Unavailable

DB_DIR = Path(__file__).resolve().parents[2] / "db"
_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def queries() -> dict[str, str]:
    """Every named query: a ``-- name: x`` line starts query ``x``, which runs to the next name."""
    found: dict[str, str] = {}
    for path in sorted((DB_DIR / "queries").glob("*.sql")):
        parts = _NAME_LINE.split(path.read_text())
        for name, sql in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice ({path.name})")
            found[name] = sql.strip().rstrip(";")
    return found


def query(name: str) -> str:
    return queries()[name]


Row = dict[str, Any]
# The one pool type: autocommit connections whose rows are dicts.
Pool = AsyncConnectionPool[psycopg.AsyncConnection[Row]]


def create_pool(settings: DatabaseSettings, *, name: str) -> Pool:
    # row_factory=dict_row makes every connection's rows dicts; psycopg_pool's constructor cannot say so in types.
    return cast(
        Pool,
        AsyncConnectionPool(
            settings.url.reveal(),
            min_size=settings.pool_min,
            max_size=settings.pool_max,
            kwargs={"autocommit": True, "row_factory": dict_row, "application_name": f"notify-{name}"},
            name=name,
            open=False,
            timeout=10.0,
        ),
    )


@asynccontextmanager
async def unavailable_on_error() -> AsyncIterator[None]:
    """Turn a lost or refused database connection into the service's 503 error."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.errors.ConnectionTimeout) as exc:
        raise Unavailable("the database is unavailable", code="database_unavailable") from exc
    except TimeoutError as exc:  # the pool's wait for a free connection
        raise Unavailable("the database is busy", code="database_unavailable") from exc


async def fetch_one(pool: Pool, name: str, params: Mapping[str, Any] | None = None) -> Row | None:
    """The first row of named query ``name``, or None."""
    async with unavailable_on_error(), pool.connection() as conn:
        return await (await conn.execute(query(name), params)).fetchone()


async def fetch_all(pool: Pool, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
    async with unavailable_on_error(), pool.connection() as conn:
        return await (await conn.execute(query(name), params)).fetchall()


async def execute(pool: Pool, name: str, params: Mapping[str, Any] | None = None) -> None:
    async with unavailable_on_error(), pool.connection() as conn:
        await conn.execute(query(name), params)
