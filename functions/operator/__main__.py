"""``python -m functions.operator``: the FrappeSite operator (kopf, standalone: one replica)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import kopf
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.operator.handlers import OperatorContext, build_registry, kopf_settings, mirror_loop
from functions.operator.kube import GROUP, PLURAL, Kube
from functions.operator.notify_client import NotifyAdmin
from functions.operator.settings import OperatorSettings
from lib.adapters.http import QuietServer, metrics_endpoint
from lib.common.logs import configure_logging

log = logging.getLogger("notify.operator")


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """The pod's ServiceAccount in a cluster, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    found = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if found is None:
        raise SystemExit("no Kubernetes credentials: neither a ServiceAccount token nor a kubeconfig")
    return found


def http_app(operator: asyncio.Task[None], ready: asyncio.Event) -> Starlette:
    async def healthz(_request: Request) -> Response:
        alive = not operator.done()
        return JSONResponse({"status": "ok" if alive else "stopped"}, status_code=200 if alive else 503)

    async def readyz(_request: Request) -> Response:
        up = ready.is_set() and not operator.done()
        return JSONResponse({"status": "ready" if up else "not_ready"}, status_code=200 if up else 503)

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)])


async def run(settings: OperatorSettings) -> None:
    kopf_config = kopf_settings()
    connection = login(kopf_config)
    memo = OperatorContext(
        settings,
        NotifyAdmin(settings.notify_api_url, settings.admin_token, timeout_s=settings.request_timeout_s),
        Kube(connection, timeout_s=settings.request_timeout_s),
    )
    if not await memo.kube.served():
        raise SystemExit(
            f"the FrappeSite CRD ({PLURAL}.{GROUP}) is not installed: install it (the chart does), then restart"
        )
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    namespaces = settings.watched_namespaces
    operator = asyncio.create_task(
        kopf.operator(
            registry=build_registry(settings, connection),
            settings=kopf_config,
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=memo,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    http = QuietServer.for_app(http_app(operator, ready), settings.http_host, settings.http_port)
    tasks = [asyncio.create_task(http.serve())]
    if settings.mirror_namespace:
        tasks.append(asyncio.create_task(mirror_after_ready(memo, ready, stop)))
    log.info("operator started", extra={"namespaces": namespaces or "all", "mirror": settings.mirror_namespace})
    try:
        await operator
    finally:
        stop.set()
        http.should_exit = True
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await memo.notify.aclose()
        await memo.kube.aclose()
    log.info("operator stopped")


async def mirror_after_ready(memo: OperatorContext, ready: asyncio.Event, stop: asyncio.Event) -> None:
    await ready.wait()
    await mirror_loop(memo, stop)


def main() -> None:
    settings = OperatorSettings.from_env()
    configure_logging(settings.log_level)
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
