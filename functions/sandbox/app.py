"""The fake providers' HTTP API.

Provider side (what the workers call, with the providers' own auth, bodies and error shapes):
- ``POST /v3/mail/send``: SendGrid v3 Mail Send; 202 with an empty body and ``X-Message-Id``.
- ``POST /api/send-message``: WASender; 200 ``{"success": true, "data": {"msgId", "jid", "status"}}``.

Control side (tests, the walkthrough, ``helm test``), under ``/_sandbox``:
- ``GET /_sandbox/messages?provider=sendgrid|wasender&limit=``: what went out (accepted calls), newest last.
- ``GET /_sandbox/calls?provider=``: every call with the status it got; ``GET /_sandbox/stats``: counts.
- ``DELETE /_sandbox/messages``: forget calls, messages and counts.
- ``PUT|GET|DELETE /_sandbox/faults/{provider}``: latency, failures, 429s, rejected recipients.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import string
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.sandbox.settings import SandboxSettings
from lib.http import EXCEPTION_HANDLERS, healthz, metrics_endpoint

PROVIDERS = ("sendgrid", "wasender")
_SENDGRID_BAD_AUTH = "The provided authorization grant is invalid, expired, or revoked"
_MAX_SENDGRID_BYTES = 30 * 1024 * 1024  # SendGrid's documented total message size limit
# SendGrid's own wording for the validation errors the sandbox reproduces.
_TO_REQUIRED = (
    "The to array is required for all personalization objects, and must have at least one email "
    "object with a valid email address."
)
_SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template with a "
    "subject defined or if every personalization has a subject defined."
)
_CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be at "
    "least one defined content block. We typically suggest both text/plain and text/html blocks are "
    "included, but only one block is required."
)


@dataclass
class Faults:
    latency_ms: float = 0
    latency_jitter_ms: float = 0
    fail_rate: float = 0.0
    fail_status: int = 503
    fail_next: int = 0
    rate_limit_next: int = 0
    retry_after_s: int = 1
    reject_recipients: list[str] = field(default_factory=list)
    reject_status: int = 0  # 0: the provider's own status for a bad recipient


class Sandbox:
    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.faults = {p: Faults() for p in PROVIDERS}
        self.messages: dict[str, deque[dict[str, Any]]] = {p: deque(maxlen=settings.max_records) for p in PROVIDERS}
        self.calls: dict[str, deque[dict[str, Any]]] = {p: deque(maxlen=settings.max_records) for p in PROVIDERS}
        self.stats: dict[str, Counter[str]] = {p: Counter() for p in PROVIDERS}
        self._next_wasender_id = 1

    def reset(self) -> None:
        for provider in PROVIDERS:
            self.messages[provider].clear()
            self.calls[provider].clear()
            self.stats[provider].clear()

    async def injected(self, provider: str) -> Response | None:
        """Apply latency, then a queued or random failure: the response to send instead, if any."""
        faults = self.faults[provider]
        delay = faults.latency_ms + random.uniform(0, faults.latency_jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        if faults.rate_limit_next > 0:
            faults.rate_limit_next -= 1
            return _rate_limited(provider, faults.retry_after_s)
        if faults.fail_next > 0 or (faults.fail_rate and random.random() < faults.fail_rate):
            faults.fail_next = max(0, faults.fail_next - 1)
            return _server_error(provider, faults.fail_status)
        return None

    def record(self, provider: str, status: int, request: dict[str, Any], accepted: dict[str, Any] | None) -> None:
        entry = {"received_at": time.time(), "status": status, **request}
        self.calls[provider].append(entry)
        self.stats[provider][str(status)] += 1
        if accepted is not None:
            self.messages[provider].append({**entry, **accepted})


def _rate_limited(provider: str, retry_after_s: int) -> Response:
    headers = {"Retry-After": str(retry_after_s)}
    if provider == "sendgrid":
        reset = str(int(time.time()) + retry_after_s)
        headers |= {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
        return JSONResponse({"errors": [{"field": None, "message": "too many requests"}]}, 429, headers)
    return JSONResponse({"success": False, "message": "Too many requests. Please slow down."}, 429, headers)


def _server_error(provider: str, status: int) -> Response:
    if provider == "sendgrid":
        return JSONResponse({"errors": [{"field": None, "message": "Internal server error", "help": None}]}, status)
    return JSONResponse({"success": False, "message": "Server error, please try again later."}, status)


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _sendgrid_error(status: int, message: str, field_name: str | None, help_text: str | None = None) -> Response:
    return JSONResponse({"errors": [{"message": message, "field": field_name, "help": help_text}]}, status)


def _sendgrid_problems(body: Any) -> list[tuple[str, str]]:
    """(field, message) for what SendGrid's v3 validation would refuse, in its own words."""
    if not isinstance(body, dict):
        return [("", "Bad Request")]
    problems = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(
            ("personalizations", "The personalizations field is required and must have at least one personalization.")
        )
        personalizations = []
    for i, p in enumerate(personalizations):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            problems.append(
                (
                    f"personalizations.{i}.to",
                    _TO_REQUIRED,
                )
            )
            continue
        for j, recipient in enumerate(to):
            if not isinstance(recipient, dict) or "@" not in str(recipient.get("email", "")):
                problems.append((f"personalizations.{i}.to.{j}.email", "Does not contain a valid address."))
    sender = body.get("from")
    if not isinstance(sender, dict) or "@" not in str(sender.get("email", "")):
        problems.append(("from.email", "The from email does not contain a valid address."))
    has_subject = bool(body.get("subject")) or all(isinstance(p, dict) and p.get("subject") for p in personalizations)
    if not has_subject and not body.get("template_id"):
        problems.append(
            (
                "subject",
                _SUBJECT_REQUIRED,
            )
        )
    content = body.get("content")
    if not body.get("template_id"):
        if not isinstance(content, list) or not content:
            problems.append(
                (
                    "content",
                    _CONTENT_REQUIRED,
                )
            )
        else:
            for k, block in enumerate(content):
                if (
                    not isinstance(block, dict)
                    or not block.get("type")
                    or not isinstance(block.get("value"), str)
                    or not block["value"]
                ):
                    problems.append(
                        (f"content.{k}", "The content value must be a string at least one character in length.")
                    )
    return problems


def _sendgrid_recipients(body: dict[str, Any]) -> list[str]:
    return [
        r.get("email", "") for p in body.get("personalizations", []) for r in p.get("to", []) if isinstance(r, dict)
    ]


def build_app(settings: SandboxSettings) -> Starlette:
    sandbox = Sandbox(settings)

    async def sendgrid_send(request: Request) -> Response:
        if not secrets.compare_digest(_bearer(request).encode(), settings.sendgrid_api_key.reveal().encode()):
            sandbox.record("sendgrid", 401, {}, None)
            return _sendgrid_error(401, _SENDGRID_BAD_AUTH, None)
        injected = await sandbox.injected("sendgrid")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        summary = {"to": _sendgrid_recipients(body) if isinstance(body, dict) else [], "body": body}
        if injected is not None:
            sandbox.record("sendgrid", injected.status_code, summary, None)
            return injected
        if len(raw) > _MAX_SENDGRID_BYTES:
            sandbox.record("sendgrid", 413, summary, None)
            return _sendgrid_error(413, "The JSON payload you have included in your request is too large.", None)
        problems = _sendgrid_problems(body)
        if body is None:
            problems = [("", "Bad Request")]
        if not problems:
            rejected = [r for r in summary["to"] if r in sandbox.faults["sendgrid"].reject_recipients]
            problems = [("personalizations.0.to.0.email", "Does not contain a valid address.")] if rejected else []
            status = sandbox.faults["sendgrid"].reject_status or 400
        else:
            status = 400
        if problems:
            sandbox.record("sendgrid", status, summary, None)
            return JSONResponse(
                {"errors": [{"message": m, "field": f or None, "help": None} for f, m in problems]}, status
            )
        message_id = "".join(secrets.choice(string.ascii_letters + string.digits + "-_") for _ in range(22))
        assert isinstance(body, dict)
        content = {c.get("type"): c.get("value") for c in body.get("content", []) if isinstance(c, dict)}
        accepted = {
            "provider_message_id": message_id,
            "subject": body.get("subject"),
            "text": content.get("text/plain"),
            "html": content.get("text/html"),
            "from": body.get("from", {}).get("email"),
            "custom_args": body.get("custom_args", {}),
        }
        sandbox.record("sendgrid", 202, summary, accepted)
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    async def wasender_send(request: Request) -> Response:
        token = _bearer(request)
        if not token:
            sandbox.record("wasender", 401, {}, None)
            return JSONResponse({"success": False, "message": "API key is required"}, 401)
        if not secrets.compare_digest(token.encode(), settings.wasender_api_key.reveal().encode()):
            sandbox.record("wasender", 401, {}, None)
            return JSONResponse({"success": False, "message": "Invalid API key"}, 401)
        injected = await sandbox.injected("wasender")
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else {}
        summary = {"to": [str(body.get("to", ""))], "body": body}
        if injected is not None:
            sandbox.record("wasender", injected.status_code, summary, None)
            return injected
        errors: dict[str, list[str]] = {}
        if not body.get("to"):
            errors["to"] = ["The to field is required."]
        if not isinstance(body.get("text"), str) or not body.get("text"):
            errors["text"] = ["The text field is required when no media is provided."]
        if errors:
            sandbox.record("wasender", 422, summary, None)
            return JSONResponse({"success": False, "message": "The given data was invalid.", "errors": errors}, 422)
        if body["to"] in sandbox.faults["wasender"].reject_recipients:
            status = sandbox.faults["wasender"].reject_status or 422
            sandbox.record("wasender", status, summary, None)
            return JSONResponse(
                {
                    "success": False,
                    "message": "The number is not registered on WhatsApp.",
                    "errors": {"to": ["The number is not registered on WhatsApp."]},
                },
                status,
            )
        msg_id = sandbox._next_wasender_id
        sandbox._next_wasender_id += 1
        jid = f"{str(body['to']).lstrip('+')}@s.whatsapp.net"
        sandbox.record("wasender", 200, summary, {"provider_message_id": str(msg_id), "text": body["text"]})
        return JSONResponse({"success": True, "data": {"msgId": msg_id, "jid": jid, "status": "in_progress"}})

    def _provider(request: Request) -> str | Response:
        provider = request.path_params.get("provider") or request.query_params.get("provider") or ""
        if provider not in PROVIDERS:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"provider must be one of {PROVIDERS}", "details": None}},
                404,
            )
        return provider

    async def list_messages(request: Request) -> Response:
        provider = _provider(request)
        if isinstance(provider, Response):
            return provider
        limit = int(request.query_params.get("limit") or settings.max_records)
        source = sandbox.calls if request.url.path.endswith("/calls") else sandbox.messages
        items = list(source[provider])[-limit:]
        return JSONResponse({"provider": provider, "count": len(items), "items": items})

    async def clear(_request: Request) -> Response:
        sandbox.reset()
        return Response(status_code=204)

    async def stats(_request: Request) -> Response:
        return JSONResponse({p: dict(sandbox.stats[p]) for p in PROVIDERS})

    async def faults(request: Request) -> Response:
        provider = _provider(request)
        if isinstance(provider, Response):
            return provider
        if request.method == "DELETE":
            sandbox.faults[provider] = Faults()
        elif request.method == "PUT":
            try:
                sandbox.faults[provider] = Faults(**(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": {"code": "validation_failed", "message": str(exc), "details": None}}, 422)
        return JSONResponse(asdict(sandbox.faults[provider]))

    routes = [
        Route("/v3/mail/send", sendgrid_send, methods=["POST"]),
        Route("/api/send-message", wasender_send, methods=["POST"]),
        Route("/_sandbox/messages", list_messages, methods=["GET"]),
        Route("/_sandbox/messages", clear, methods=["DELETE"]),
        Route("/_sandbox/calls", list_messages, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/faults/{provider}", faults, methods=["GET", "PUT", "DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    app.state.sandbox = sandbox
    return app
