"""A worker's side HTTP server: /healthz, /readyz (polling Kafka? PostgreSQL reachable?) and /metrics."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lib.adapters import db
from lib.adapters.http import EXCEPTION_HANDLERS, healthz, metrics_endpoint
from lib.delivery.consumer import ChannelWorker
from lib.domain.errors import NotifyError


def health_app(worker: ChannelWorker, pool: db.Pool) -> Starlette:
    async def readyz(_request: Request) -> Response:
        checks = {"kafka": "ok" if time.monotonic() - worker.last_poll < 10 else "not polling"}
        try:
            async with db.unavailable_on_error(), pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            checks["postgres"] = "ok"
        except NotifyError as exc:
            checks["postgres"] = exc.message
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "checks": checks,
                "in_flight": len(worker.tasks),
                "partitions": sorted(p for _, p in worker.assigned),
            },
            status_code=200 if ready else 503,
        )

    routes = [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
