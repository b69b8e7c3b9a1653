"""A channel worker process: the delivery context (pool, dead-letter producer, retry policy, breaker, rate
limit), the consume loop (``lib.delivery.consumer``), the health server, and SIGTERM: drain, then exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvloop

from lib.adapters import db
from lib.adapters.http import QuietServer
from lib.adapters.kafka import Publisher
from lib.adapters.providers import Provider
from lib.adapters.sealing import Sealer
from lib.common.logs import configure_logging, tune_gc
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, RetryPolicy
from lib.common.settings import Secret
from lib.delivery.accounts import Account, Accounts
from lib.delivery.channels import ChannelWorkerSettings
from lib.delivery.consumer import ChannelWorker
from lib.delivery.health import health_app
from lib.delivery.pipeline import DeliveryContext
from lib.delivery.settings import WorkerSettings
from lib.delivery.store import DeliveryStore
from lib.domain.vocabulary import Channel

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _limiter(settings: WorkerSettings) -> TokenBucket | None:
    return TokenBucket(settings.rate_per_s) if settings.rate_per_s > 0 else None


def _breaker(settings: WorkerSettings) -> CircuitBreaker:
    return CircuitBreaker(settings.circuit_failure_threshold, settings.circuit_open_s)


def site_accounts(settings: WorkerSettings, pool: db.Pool, connect: Callable[[Secret], Provider]) -> Accounts:
    """Sites' own provider accounts on this channel, each with a breaker and a rate limit of its own."""

    async def find_key(site_id: str) -> dict[str, Any] | None:
        return await db.fetch_one(pool, "provider_account_key", {"site_id": site_id, "channel": settings.channel})

    return Accounts(
        find_key,
        Sealer.of(settings.key_encryption_keys),
        connect,
        lambda provider: Account(provider, _breaker(settings), _limiter(settings), own=True),
    )


@contextlib.asynccontextmanager
async def delivery_context(
    settings: WorkerSettings, provider: Provider, connect: Callable[[Secret], Provider] | None = None
) -> AsyncIterator[tuple[DeliveryContext, db.Pool]]:
    """``connect`` opens a provider client with a site's own key (None: every site uses ``provider``)."""
    pool = db.create_pool(settings.database, name=f"worker-{settings.channel}")
    await pool.open(wait=False)
    dead_letters = Publisher(settings.kafka)
    accounts = site_accounts(settings, pool, connect) if connect is not None else None
    ctx = DeliveryContext(
        channel=settings.channel,
        store=DeliveryStore(pool, worker_id(), settings.lease_s),
        provider=provider,
        dead_letters=dead_letters,
        dlq_topic=settings.kafka.dlq_topic(settings.channel),
        policy=RetryPolicy(max_retries=settings.max_retries, base_delay_s=settings.retry_base_s),
        breaker=_breaker(settings),
        limiter=_limiter(settings),
        accounts=accounts,
        provider_slots=asyncio.Semaphore(settings.concurrency),
    )
    try:
        yield ctx, pool
    finally:
        await provider.aclose()
        if accounts is not None:
            await accounts.aclose()
        await asyncio.to_thread(dead_letters.close)
        await pool.close()


async def serve(
    settings: WorkerSettings, provider: Provider, connect: Callable[[Secret], Provider] | None = None
) -> None:
    """Run one worker process until SIGTERM/SIGINT; then drain and exit normally."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with delivery_context(settings, provider, connect) as (ctx, pool):
        worker = ChannelWorker(settings, ctx)
        http = QuietServer.for_app(health_app(worker, pool), settings.http_host, settings.http_port)
        http_task = asyncio.create_task(http.serve())
        tune_gc()
        log.info(
            "worker started",
            extra={"channel": settings.channel, "group": settings.consumer_group, "worker_id": ctx.store.worker_id},
        )
        try:
            await worker.run(stop)
        finally:
            http.should_exit = True
            await http_task
    log.info("worker stopped", extra={"channel": settings.channel})


def main(channel: Channel) -> None:
    """``python -m functions.<channel>``: read the channel's settings once, then serve until SIGTERM."""
    settings = ChannelWorkerSettings.from_env(channel)
    configure_logging(settings.worker.log_level)
    uvloop.run(serve(settings.worker, settings.connect(), settings.connect_with))
