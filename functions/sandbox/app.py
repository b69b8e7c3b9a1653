"""The sandbox's HTTP app: the two fake providers, the ``/_sandbox`` control routes, probes and metrics.

Provider side (the providers' own paths, auth, bodies and error shapes, so real clients work unchanged):
- ``POST /v3/mail/send``: SendGrid v3 Mail Send (``functions.sandbox.sendgrid``).
- ``POST /api/send-message``: WASender (``functions.sandbox.wasender``), and its session API
  (``/api/whatsapp-sessions``, with the account's Personal Access Token).

Control side (tests, the walkthrough, ``helm test``), under ``/_sandbox`` (``functions.sandbox.control``):
- ``GET /_sandbox/messages?provider=sendgrid|wasender&limit=``: what went out (accepted calls).
- ``GET /_sandbox/calls?provider=&limit=``: every call with its status; ``GET /_sandbox/stats``: counts.
- ``DELETE /_sandbox/messages``: forget calls, messages and counts.
- ``GET|PUT|DELETE /_sandbox/faults/{provider}``: latency, failures, 429s, rejected recipients.
- ``GET|PUT /_sandbox/sendgrid/webhook``: where the fake SendGrid posts its signed Event Webhook, and its key.
- ``GET|PUT /_sandbox/wasender/webhook``: where the fake WASender posts its messages.update webhook.
- ``GET /_sandbox/media``: the media the fake WASender fetched for the messages it took (loopback URLs only).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from functions.sandbox.control import Control
from functions.sandbox.faults import Faults
from functions.sandbox.ledger import Ledger
from functions.sandbox.sendgrid import SendGridFake
from functions.sandbox.sendgrid import summary as sendgrid_summary
from functions.sandbox.settings import SandboxSettings
from functions.sandbox.wasender import WASenderFake, WASenderSessionsFake
from functions.sandbox.wasender import summary as wasender_summary
from functions.sandbox.webhooks import EventWebhook, StatusWebhook, private_key
from lib.adapters.http import EXCEPTION_HANDLERS, RequestMetrics, healthz, metrics_endpoint


def build_app(settings: SandboxSettings) -> Starlette:
    ledgers = {
        "sendgrid": Ledger("sendgrid", settings.max_records, Faults(reject_status=400), sendgrid_summary),
        "wasender": Ledger("wasender", settings.max_records, Faults(reject_status=422), wasender_summary),
    }
    webhook = EventWebhook(private_key(settings.sendgrid_webhook_private_key.reveal()))
    sendgrid = SendGridFake(ledgers["sendgrid"], settings.sendgrid_api_key, webhook)
    status_webhook = StatusWebhook(settings.wasender_webhook_secret.reveal())
    wasender = WASenderFake(ledgers["wasender"], settings.wasender_api_key, status_webhook)
    sessions = WASenderSessionsFake(wasender, settings.wasender_personal_access_token)
    routes = [
        Route("/v3/mail/send", sendgrid.send, methods=["POST"]),
        Route("/api/send-message", wasender.send, methods=["POST"]),
        *sessions.routes(),
        *webhook.routes(),
        *status_webhook.routes(),
        *Control(ledgers).routes(),
        Route("/_sandbox/media", lambda _request: JSONResponse({"items": wasender.fetched}), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(RequestMetrics)], exception_handlers=EXCEPTION_HANDLERS)
