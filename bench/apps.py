"""Baseline servers for the API benchmark, served exactly like the API (uvicorn with its options, one process).

``python -m bench.apps hello|pg|api|api-no-auth PORT``:
- hello: a bare Starlette endpoint answering 202 with no I/O (R_hello)
- pg: the same endpoint doing one pooled psycopg insert of a message row (R_pg)
- api / api-no-auth: the real API; the second swaps the authenticator for a plain dict from key to site, in
  this harness only, to price authentication.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from psycopg.types.json import Jsonb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.api import app as api_module
from functions.api.__main__ import server_options
from functions.api.settings import ApiSettings
from lib.adapters import db
from lib.common.settings import DatabaseSettings, Env
from lib.domain.vocabulary import CHANNELS, SiteStatus
from lib.services.identity import SiteIdentity


async def hello(_request: Request) -> Response:
    return JSONResponse({"status": "PENDING"}, status_code=202)


async def sink(request: Request) -> Response:
    """The baseline of webhook ingestion: the same request read whole and acknowledged, nothing else."""
    await request.body()
    return Response(status_code=204)


def pg_app() -> Starlette:
    site_id = uuid.UUID(os.environ["BENCH_SITE_ID"])
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with db.create_pool(DatabaseSettings.from_env(Env()), name="bench-pg") as pool:
            state["pool"] = pool
            yield

    async def insert(request: Request) -> Response:
        data = await request.json()
        message_id = uuid.uuid4()
        async with state["pool"].connection() as conn:
            await conn.execute(
                "INSERT INTO message_logs (id, site_id, channel, recipient, subject, body, metadata) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    message_id,
                    site_id,
                    data["channel"],
                    data["recipient"],
                    data.get("subject"),
                    data["body"],
                    Jsonb(data.get("metadata") or {}),
                ),
            )
        return JSONResponse({"message_id": str(message_id), "status": "PENDING"}, status_code=202)

    return Starlette(routes=[Route("/api/v1/notifications/send", insert, methods=["POST"])], lifespan=lifespan)


class BypassedAuth:
    """Harness-only stand-in for the authenticator: a dict from key to its site, no checks. Each key still
    maps to its own site, so the rest of the request (per-site metrics rows, quotas) costs what it does for real."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.sites = {
            key: SiteIdentity(uuid.UUID(site_id), "bench", SiteStatus.ACTIVE, CHANNELS, None)
            for key, site_id in json.loads(os.environ["BENCH_SITES"]).items()
        }

    async def authenticate(self, presented: str | None, _client: str = "") -> SiteIdentity:
        return self.sites[presented or ""]

    def forget_site(self, _site_id: uuid.UUID) -> None:
        return None


def build(kind: str) -> Any:
    if kind == "hello":
        return Starlette(routes=[Route("/api/v1/notifications/send", hello, methods=["POST"])])
    if kind == "pg":
        return pg_app()
    if kind == "sink":
        return Starlette(routes=[Route("/webhooks/sendgrid", sink, methods=["POST"])])
    if kind == "api-no-auth":  # harness only, never the product
        return api_module.create_app(ApiSettings.from_env(), make_authenticator=lambda _pool, _settings: BypassedAuth())
    return api_module.create_app(ApiSettings.from_env())


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    options = server_options(ApiSettings.from_env())
    uvicorn.run(build(kind), host="127.0.0.1", port=port, log_level="warning", **options)


if __name__ == "__main__":
    main()
