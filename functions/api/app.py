"""The REST API: routes, authentication, error mapping and the lifespan that owns pool and producer.

Handlers only parse, call a service in ``lib``, and serialise.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote
from uuid import UUID

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from functions.api.openapi import openapi_document
from functions.api.settings import ApiSettings
from lib.adapters import db
from lib.adapters.http import (
    EXCEPTION_HANDLERS,
    BodyLimits,
    RequestMetrics,
    healthz,
    metrics_endpoint,
    parse_json_body,
    read_body,
    read_json,
    watch_event_loop,
)
from lib.adapters.kafka import Publisher, sized_for_topics, topic_max_message_bytes
from lib.adapters.sealing import Sealer
from lib.adapters.webhook_signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, SendGridVerifier
from lib.common.logs import tune_gc
from lib.domain.errors import BadRequest, Forbidden, NotifyError, Unauthorized, Unavailable
from lib.domain.provider_events import parse_sendgrid_events, parse_wasender_event
from lib.domain.validation import check_idempotency_key, parse_notification
from lib.domain.vocabulary import MessageStatus
from lib.services import (
    accepting,
    attachments,
    provider_accounts,
    provider_events,
    reading,
    replay,
    scheduling,
    senders,
    site_metrics,
    sites,
    suppressions,
    whatsapp_sessions,
)
from lib.services.admin import AdminGate
from lib.services.auth import Authenticator, SiteAuthenticator
from lib.services.identity import SiteIdentity
from lib.services.quota import BulkSlots, KeyRotations, SiteQuotas
from lib.services.sweeper import sweep_stuck_pending

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: ApiSettings
    pool: db.Pool
    publisher: Publisher
    auth: SiteAuthenticator
    admin: AdminGate
    acceptor: accepting.Acceptor
    quotas: SiteQuotas
    rotations: KeyRotations
    bulk_slots: BulkSlots
    draining: Draining
    body_limits: BodyLimits
    sealer: Sealer | None
    sendgrid_verifier: SendGridVerifier | None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


# --- authentication ---------------------------------------------------------------------------------


def client_address(request: Request) -> str:
    """The client as the API sees it: the peer, or what a trusted proxy says in X-Forwarded-For."""
    return request.client.host if request.client else ""


def require_admin(request: Request) -> None:
    services(request).admin.check(request.headers.get("authorization"), client_address(request))


async def require_site(request: Request) -> SiteIdentity:
    return await services(request).auth.authenticate(request.headers.get("x-site-key"), client_address(request))


# --- sites ------------------------------------------------------------------------------------------


async def register_site(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    data = await read_json(request, svc.settings.max_body_bytes, svc.body_limits)
    if not isinstance(data, dict):
        data = {"site_name": None}
    name = sites.check_site_name(data.get("site_name"))
    url = sites.check_site_url(data.get("site_url"))
    managed_by = sites.check_managed_by(data.get("managed_by"))
    return JSONResponse(
        await sites.register_site(svc.pool, name, url, managed_by=managed_by, rounds=svc.settings.key_bcrypt_rounds),
        status_code=201,
    )


async def rotate_key(request: Request) -> Response:
    site = await require_site(request)
    svc = services(request)
    svc.rotations.take(site)
    result = await sites.rotate_key(svc.pool, site.site_id, rounds=svc.settings.key_bcrypt_rounds)
    svc.auth.forget_site(site.site_id)
    return JSONResponse(result)


async def site_me(request: Request) -> Response:
    site = await require_site(request)
    return JSONResponse(await sites.get_site(services(request).pool, site.site_id))


async def admin_list_sites(request: Request) -> Response:
    require_admin(request)
    return JSONResponse({"items": await sites.list_sites(services(request).pool)})


async def admin_site(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    if request.method == "GET":
        return JSONResponse(await sites.get_site_by_name(svc.pool, name))
    changes = sites.parse_site_changes(await read_json(request, svc.settings.max_body_bytes, svc.body_limits))
    updated = await sites.update_site(svc.pool, name, changes)
    svc.auth.forget_site(UUID(updated["site_id"]))
    return JSONResponse(updated)


async def admin_rotate_key(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    result = await sites.rotate_key_by_name(svc.pool, name, rounds=svc.settings.key_bcrypt_rounds)
    svc.auth.forget_site(UUID(result["site_id"]))
    return JSONResponse(result)


async def admin_site_senders(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    if request.method == "GET":
        return JSONResponse(await senders.senders_by_name(svc.pool, name))
    policy = senders.parse_sender_policy(await read_json(request, svc.settings.max_body_bytes, svc.body_limits))
    updated = await senders.set_senders(svc.pool, name, policy)
    svc.auth.forget_site(UUID(updated["site_id"]))  # this process sends as the new senders at once
    return JSONResponse(updated)


async def admin_provider_account(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    channel = provider_accounts.check_channel_name(request.path_params["channel"])
    if request.method == "DELETE":
        await provider_accounts.remove_account(svc.pool, name, channel)
        return Response(status_code=204)
    api_key = provider_accounts.parse_api_key(await read_json(request, svc.settings.max_body_bytes, svc.body_limits))
    _site_id, account = await provider_accounts.set_account(svc.pool, svc.sealer, name, channel, api_key)
    return JSONResponse(account)


async def admin_provider_accounts(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    site = await sites.get_site_by_name(svc.pool, sites.check_site_name(request.path_params["site_name"]))
    return JSONResponse(await provider_accounts.accounts_of(svc.pool, UUID(site["site_id"])))


async def site_provider_accounts(request: Request) -> Response:
    site = await require_site(request)
    return JSONResponse(await provider_accounts.accounts_of(services(request).pool, site.site_id))


async def admin_whatsapp_session(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    if request.method == "GET":
        return JSONResponse(await whatsapp_sessions.status(svc.pool, svc.settings.wasender, name))
    if request.method == "DELETE":
        await whatsapp_sessions.delete(svc.pool, svc.settings.wasender, name)
        return Response(status_code=204)
    data = await read_json(request, svc.settings.max_body_bytes, svc.body_limits)
    created = await whatsapp_sessions.create(svc.pool, svc.sealer, svc.settings.wasender, name, data)
    return JSONResponse(created, status_code=201)


async def admin_whatsapp_session_connect(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    name = sites.check_site_name(request.path_params["site_name"])
    return JSONResponse(await whatsapp_sessions.connect(svc.pool, svc.settings.wasender, name))


async def site_whatsapp_session(request: Request) -> Response:
    site = await require_site(request)
    return JSONResponse(await whatsapp_sessions.stored(services(request).pool, site.site_name))


async def site_senders(request: Request) -> Response:
    site = await require_site(request)
    return JSONResponse(await senders.senders_of(services(request).pool, site.site_id))


async def admin_replay(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    which = replay.parse_replay_filter(await read_json(request, svc.settings.max_body_bytes, svc.body_limits))
    replayed = await replay.replay(svc.pool, svc.publisher, svc.settings.kafka, which)
    return JSONResponse({"replayed": len(replayed), "message_ids": replayed}, status_code=202)


# --- notifications ----------------------------------------------------------------------------------


# The busiest answer, written out: a UUID needs no escaping, and JSONResponse builds an encoder per call.
_ACCEPTED_BODY = {
    status: b'{"message_id":"%s","status":"' + status.encode() + b'"}'
    for status in (MessageStatus.PENDING, MessageStatus.SCHEDULED)
}


async def send_notification(request: Request) -> Response:
    site = await require_site(request)
    svc = services(request)
    key = check_idempotency_key(request.headers.get("idempotency-key"))
    req = parse_notification(
        await read_json(request, svc.settings.send_body_limit, svc.body_limits),
        idempotency_key=key,
        attachment_limit=svc.settings.attachments_max_bytes,
    )
    if req.content.attachments or req.content.media is not None:
        req = await svc.acceptor.resolve_attachments(site, req)
    item = svc.acceptor.prepare(site, req)  # a refused channel or an oversized record costs no quota
    svc.quotas.take(site)
    accepted = await svc.acceptor.accept(site, item)
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else None
    body = _ACCEPTED_BODY[accepted.status] % str(accepted.message_id).encode()
    return Response(body, status_code=202, headers=headers, media_type="application/json")


async def send_bulk(request: Request) -> Response:
    site = await require_site(request)
    svc = services(request)
    with svc.bulk_slots.held(site):  # before the body is read: a refused bulk costs nothing
        data = await read_json(request, svc.settings.max_bulk_body_bytes, svc.body_limits)
        bulk = await svc.acceptor.prepare_bulk(site, data.get("items") if isinstance(data, dict) else None)
        if bulk.ready:  # the quota is charged for valid items only; those beyond it are rejected one by one
            granted = svc.quotas.grant(site, len(bulk.ready))
            bulk.refuse_beyond(granted, svc.quotas.limited(site))
        results = await svc.acceptor.accept_bulk(site, bulk)
    accepted = sum(1 for r in results if r["status"] == "accepted")
    return JSONResponse(
        {"accepted": accepted, "rejected": len(results) - accepted, "results": results}, status_code=202
    )


async def get_notification(request: Request) -> Response:
    site = await require_site(request)
    message_id = reading.parse_message_id(request.path_params["message_id"])
    return JSONResponse(await reading.get_message(services(request).pool, site, message_id))


async def upload_attachment(request: Request) -> Response:
    site = await require_site(request)
    svc = services(request)
    data = await read_json(request, svc.settings.send_body_limit, svc.body_limits)
    return JSONResponse(
        await attachments.upload(svc.pool, site, data, svc.settings.attachments_max_bytes), status_code=201
    )


async def media_file(request: Request) -> Response:
    """A signed media link (no key: the signature is the credential), fetched by a provider."""
    svc = services(request)
    content, content_type, filename = await attachments.media_file(
        svc.pool, svc.settings.media_signing_key, request.path_params["attachment_id"], request.query_params
    )
    disposition = f"inline; filename*=UTF-8''{quote(filename)}"
    headers = {"Content-Disposition": disposition, "Cache-Control": "private, no-store"}
    return Response(content, media_type=content_type, headers=headers)


async def notification_events(request: Request) -> Response:
    site = await require_site(request)
    message_id = reading.parse_message_id(request.path_params["message_id"])
    return JSONResponse(await reading.timeline(services(request).pool, site, message_id))


async def sendgrid_events(request: Request) -> Response:
    """SendGrid's Event Webhook: verified (signature and age) before anything is read as events; stored and
    acknowledged at once, applied off the request path."""
    svc = services(request)
    raw = await read_body(request, svc.settings.max_bulk_body_bytes, svc.body_limits)
    if svc.sendgrid_verifier is None:
        raise Forbidden("webhook verification is not configured", code="webhook_not_configured")
    refusal = svc.sendgrid_verifier.refusal(
        request.headers.get(SIGNATURE_HEADER),
        request.headers.get(TIMESTAMP_HEADER),
        raw,
        now=time.time(),
        max_age_s=svc.settings.webhook_max_age_s,
    )
    if refusal == "unsigned":
        raise Unauthorized("the webhook is not signed", code="webhook_unsigned")
    if refusal is not None:
        raise Forbidden("the webhook's signature is not valid", code="webhook_signature_invalid")
    try:
        events = parse_sendgrid_events(parse_json_body(raw))
    except ValueError as exc:
        raise BadRequest(f"not a SendGrid event batch: {exc}", code="invalid_json") from None
    await provider_events.store(svc.pool, events)
    return Response(status_code=204)


async def wasender_events(request: Request) -> Response:
    """WASender's webhook: its X-Webhook-Signature must be the webhook secret (WASender's own scheme: the secret
    itself, compared in constant time); a message's status update is stored once and applied off the request path."""
    svc = services(request)
    raw = await read_body(request, svc.settings.max_body_bytes, svc.body_limits)
    secret = svc.settings.wasender_webhook_secret
    if secret is None:
        raise Forbidden("webhook verification is not configured", code="webhook_not_configured")
    given = request.headers.get("x-webhook-signature")
    if not given:
        raise Unauthorized("the webhook is not signed", code="webhook_unsigned")
    if not hmac.compare_digest(given.encode(), secret.reveal().encode()):
        raise Forbidden("the webhook's signature is not valid", code="webhook_signature_invalid")
    try:
        events = parse_wasender_event(parse_json_body(raw))
    except ValueError as exc:
        raise BadRequest(f"not a WASender webhook: {exc}", code="invalid_json") from None
    await provider_events.store(svc.pool, events)
    return JSONResponse({"received": True})


async def site_suppressions(request: Request) -> Response:
    site = await require_site(request)
    query = suppressions.parse_query(dict(request.query_params), {"channel", "limit"})
    return JSONResponse(await suppressions.of_site(services(request).pool, site, query))


async def remove_suppression(request: Request) -> Response:
    site = await require_site(request)
    params = request.path_params
    await suppressions.remove(services(request).pool, site, params["channel"], params["recipient"])
    return Response(status_code=204)


async def admin_suppressions(request: Request) -> Response:
    require_admin(request)
    query = suppressions.parse_query(dict(request.query_params), {"channel", "limit", "site_name"})
    return JSONResponse(await suppressions.every_site(services(request).pool, query))


async def cancel_notification(request: Request) -> Response:
    site = await require_site(request)
    message_id = reading.parse_message_id(request.path_params["message_id"])
    return JSONResponse(await scheduling.cancel(services(request).pool, site, message_id))


async def list_notifications(request: Request) -> Response:
    site = await require_site(request)
    filters = reading.parse_list_filters(dict(request.query_params))
    return JSONResponse(await reading.list_messages(services(request).pool, site, filters))


async def site_daily_metrics(request: Request) -> Response:
    site = await require_site(request)
    first, last, channel = site_metrics.parse_range(dict(request.query_params))
    return JSONResponse(await site_metrics.daily_metrics(services(request).pool, site, first, last, channel))


# --- probes -----------------------------------------------------------------------------------------


async def readyz(request: Request) -> Response:
    svc = services(request)
    if svc.draining.since is not None:
        return JSONResponse({"status": "draining", "checks": {}}, status_code=503)
    checks: dict[str, str] = {}
    try:
        async with db.unavailable_on_error(), svc.pool.connection(timeout=2.0) as conn:
            await conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except NotifyError as exc:
        checks["postgres"] = exc.message
    try:
        await svc.publisher.check_ready()
        checks["kafka"] = "ok"
    except Unavailable as exc:
        checks["kafka"] = exc.message
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


async def openapi(_request: Request) -> Response:
    return JSONResponse(openapi_document())


# The hot routes first: the router tries them in order.
ROUTES = [
    Route("/api/v1/notifications/send", send_notification, methods=["POST"]),
    Route("/api/v1/notifications/bulk", send_bulk, methods=["POST"]),
    Route("/api/v1/notifications", list_notifications, methods=["GET"]),
    Route("/api/v1/notifications/{message_id}", get_notification, methods=["GET"]),
    Route("/api/v1/notifications/{message_id}/cancel", cancel_notification, methods=["POST"]),
    Route("/api/v1/notifications/{message_id}/events", notification_events, methods=["GET"]),
    Route("/webhooks/sendgrid", sendgrid_events, methods=["POST"]),
    Route("/webhooks/wasender", wasender_events, methods=["POST"]),
    Route("/api/v1/suppressions", site_suppressions, methods=["GET"]),
    Route("/api/v1/suppressions/{channel}/{recipient}", remove_suppression, methods=["DELETE"]),
    Route("/api/v1/admin/suppressions", admin_suppressions, methods=["GET"]),
    Route("/api/v1/attachments", upload_attachment, methods=["POST"]),
    Route("/media/{attachment_id}", media_file, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/api/v1/site/register", register_site, methods=["POST"]),
    Route("/api/v1/site/rotate-key", rotate_key, methods=["POST"]),
    Route("/api/v1/site/me", site_me, methods=["GET"]),
    Route("/api/v1/site/senders", site_senders, methods=["GET"]),
    Route("/api/v1/site/provider-accounts", site_provider_accounts, methods=["GET"]),
    Route("/api/v1/site/whatsapp-session", site_whatsapp_session, methods=["GET"]),
    Route("/api/v1/admin/sites", admin_list_sites, methods=["GET"]),
    Route("/api/v1/admin/sites/{site_name}", admin_site, methods=["GET", "PATCH"]),
    Route("/api/v1/admin/sites/{site_name}/rotate-key", admin_rotate_key, methods=["POST"]),
    Route("/api/v1/admin/sites/{site_name}/senders", admin_site_senders, methods=["GET", "PUT"]),
    Route("/api/v1/admin/sites/{site_name}/provider-accounts", admin_provider_accounts, methods=["GET"]),
    Route(
        "/api/v1/admin/sites/{site_name}/whatsapp-session", admin_whatsapp_session, methods=["GET", "POST", "DELETE"]
    ),
    Route("/api/v1/admin/sites/{site_name}/whatsapp-session/connect", admin_whatsapp_session_connect, methods=["POST"]),
    Route(
        "/api/v1/admin/sites/{site_name}/provider-accounts/{channel}",
        admin_provider_account,
        methods=["PUT", "DELETE"],
    ),
    Route("/api/v1/admin/replay", admin_replay, methods=["POST"]),
    Route("/api/v1/metrics", site_daily_metrics, methods=["GET"]),
]


async def learn_topic_limit(settings: ApiSettings) -> int | None:
    """The topics' max.message.bytes, when the broker tells it at start-up; without it the producer's own limit
    (1,000,000 bytes, under Kafka's default 1,048,588) stands."""
    try:
        return await asyncio.to_thread(topic_max_message_bytes, settings.kafka)
    except Exception as exc:  # the broker may be down at start: the API starts anyway
        log.warning("could not read the topics' max.message.bytes", extra={"error": str(exc)})
        return None


def authenticator_for(pool: db.Pool, settings: ApiSettings) -> Authenticator:
    return Authenticator(
        pool,
        cache_ttl_s=settings.auth_cache_ttl_s,
        negative_ttl_s=settings.auth_negative_ttl_s,
        bcrypt_concurrency=settings.auth_bcrypt_concurrency,
        failure_limit=settings.auth_failure_limit,
        client_failure_limit=settings.auth_client_failure_limit,
        failure_window_s=settings.auth_failure_window_s,
        throttle_delay_s=settings.auth_throttle_delay_s,
    )


class Draining:
    """Set when the process is told to stop: /readyz answers 503 from then on, while requests are still served,
    so the load balancer stops sending before the server closes (see functions.api.__main__)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def start(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


def create_app(
    settings: ApiSettings,
    *,
    make_authenticator: Callable[[db.Pool, ApiSettings], SiteAuthenticator] = authenticator_for,
    draining: Draining | None = None,
) -> Starlette:
    """The API. ``make_authenticator`` builds the key checker once the pool exists (the benchmark passes its
    stand-in); ``draining`` is set by the server on SIGTERM."""
    stopping = draining or Draining()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = db.create_pool(settings.database, name="api")
        await pool.open(wait=False)
        publisher = Publisher(
            settings.kafka,
            **{"message.timeout.ms": settings.kafka_delivery_timeout_ms},
            **sized_for_topics(await learn_topic_limit(settings)),
        )
        auth = make_authenticator(pool, settings)
        admin = AdminGate(
            settings.admin_token,
            failure_limit=settings.admin_failure_limit,
            failure_window_s=settings.auth_failure_window_s,
        )
        acceptor = accepting.Acceptor(
            pool,
            publisher,
            settings.kafka,
            max_in_flight=settings.insert_slots,
            schedule_horizon=timedelta(days=settings.schedule_horizon_days),
            attachment_limit=settings.attachments_max_bytes,
        )
        rotations = KeyRotations(settings.key_rotations_per_hour)
        bulk_slots = BulkSlots(settings.bulk_concurrency_per_site)
        bodies = BodyLimits(settings.body_timeout_s, settings.body_budget_bytes)
        sealer = Sealer.of(settings.key_encryption_keys)
        svc = Services(
            settings,
            pool,
            publisher,
            auth,
            admin,
            acceptor,
            SiteQuotas(),
            rotations,
            bulk_slots,
            stopping,
            bodies,
            sealer,
            SendGridVerifier(settings.sendgrid_webhook_public_key) if settings.sendgrid_webhook_public_key else None,
        )
        app.state.services = svc
        sweeper = (
            asyncio.create_task(
                sweep_stuck_pending(pool, publisher, settings.kafka, after_s=settings.stuck_pending_after_s)
            )
            if settings.stuck_pending_after_s > 0
            else None
        )
        scheduler = asyncio.create_task(
            scheduling.run_scheduler(pool, publisher, settings.kafka, interval_s=settings.scheduler_interval_s)
        )
        purger = asyncio.create_task(attachments.purge_every_hour(pool, days=settings.attachment_retention_days))
        applier = asyncio.create_task(provider_events.apply_continuously(pool))
        tune_gc()
        watcher = asyncio.create_task(watch_event_loop())
        try:
            yield
        finally:
            watcher.cancel()
            for task in (sweeper, scheduler, purger, applier):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await asyncio.to_thread(publisher.close)
            await pool.close()

    middleware = [Middleware(RequestMetrics)]
    if settings.trusted_proxies:  # uvicorn's own: the client address from X-Forwarded-For, past trusted hops only
        middleware.insert(0, Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies)))
    return Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
