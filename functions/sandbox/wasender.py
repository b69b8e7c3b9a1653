"""Fake WASender: ``POST /api/send-message`` with a Bearer session key and ``{"to": "+E164", "text": ...}``.

Accepted: 200 ``{"success": true, "data": {"msgId": <int>, "jid": <to>, "status": "in_progress"}}``.
Refused: ``{"success": false, "message", "errors"?}`` (401 missing or wrong key, 422 validation, 429 with
``retry_after`` and the ``X-RateLimit-*`` headers, and whatever an injected fault asks for).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import secrets
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.sandbox.calls import Arrival, BearerKey, FakeEndpoint, Refusals, parse_json
from functions.sandbox.ledger import Ledger, Record
from functions.sandbox.webhooks import StatusWebhook
from lib.common.settings import Secret

MAX_BYTES = 10 * 1024 * 1024  # the sandbox's own guard: WASender documents no body limit
RATE_LIMIT = 256  # WASender's paid plans: requests per minute on the send endpoint
MEDIA = ("imageUrl", "videoUrl", "documentUrl", "audioUrl", "stickerUrl", "contact", "location")
KNOWN = frozenset({"to", "text", "fileName", *MEDIA})
FETCHABLE_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # the sandbox reaches nothing off this machine
TO_REQUIRED = "The to field is required."
TO_INVALID = "The to field must be a phone number in E.164 format, a group JID or a channel JID."
TEXT_REQUIRED = "The text field is required when no media is present."
NOT_ON_WHATSAPP = "The to number is not registered on WhatsApp."
# E.164, or a WhatsApp JID: a person, a group, a community channel.
_TO = re.compile(r"\+[1-9][0-9]{6,14}|[0-9]{5,20}(-[0-9]+)?@(s\.whatsapp\.net|g\.us|newsletter|lid)")


def message(status: int, text: str, **extra: Any) -> Response:
    return JSONResponse({"success": False, "message": text, **extra}, status)


def invalid(status: int, errors: dict[str, list[str]]) -> Response:
    return message(status, "Validation failed", errors=errors)


def failure(status: int, retry_after_s: int) -> Response:
    """WASender's answer for an injected failure status."""
    if status == 429:
        body = {
            "success": False,
            "message": f"Too many requests. Please retry after {retry_after_s} seconds.",
            "retry_after": retry_after_s,
        }
        headers = {
            "Retry-After": str(retry_after_s),
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry_after_s),
        }
        return JSONResponse(body, 429, headers)
    if status == 401:
        return message(401, "Invalid API key")
    if status == 422:
        return invalid(422, {"to": [TO_INVALID]})
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Server Error"
    return message(status, phrase)


def validate(body: Any) -> dict[str, list[str]]:
    """Field errors as WASender words them (Laravel style: field -> messages)."""
    body = body if isinstance(body, dict) else {}
    errors: dict[str, list[str]] = {}
    to = body.get("to")
    if to is None or to == "":
        errors["to"] = [TO_REQUIRED]
    elif not isinstance(to, str) or not _TO.fullmatch(to):
        errors["to"] = [TO_INVALID]
    text = body.get("text")
    if text is None or text == "":
        if not any(body.get(m) for m in MEDIA):
            errors["text"] = [TEXT_REQUIRED]
    elif not isinstance(text, str):
        errors["text"] = ["The text field must be a string."]
    return errors


def summary(body: Any) -> Record:
    """What the listing shows of one request; fields WASender ignores are kept under ``extra``."""
    body = body if isinstance(body, dict) else {}
    to = body.get("to")
    return {
        "to": [to] if isinstance(to, str) else [],
        "text": body.get("text"),
        "media": {m: body[m] for m in MEDIA if m in body},
        "file_name": body.get("fileName"),
        "extra": {k: v for k, v in body.items() if k not in KNOWN},
    }


_REFUSALS = Refusals(
    unauthorized=lambda presented: message(401, "Invalid API key" if presented else "API key is required"),
    injected=failure,
    too_large=lambda: message(413, "The request body is too large."),
)


class WASenderFake(FakeEndpoint):
    """The ``POST /api/send-message`` endpoint over one ledger and the one session key it accepts."""

    refusals = _REFUSALS
    max_bytes = MAX_BYTES

    def __init__(self, ledger: Ledger, api_key: Secret, webhook: StatusWebhook | None = None) -> None:
        super().__init__(ledger, api_key)
        self._webhook = webhook
        # Integers, as WASender's msgId; started from the clock so a restarted sandbox does not reuse them.
        self._ids = itertools.count(int(time.time() * 1000))
        self.fetched: list[dict[str, Any]] = []  # what it fetched of each message's media, as WASender does
        self._fetching: set[asyncio.Task[None]] = set()

    def accept_key(self, key: Secret) -> None:
        self._key.add(key)

    def drop_key(self, key: Secret) -> None:
        self._key.remove(key)

    def answer(self, arrival: Arrival) -> Response:
        received_at, raw, body = arrival.received_at, arrival.raw, arrival.body
        faults = self._ledger.faults
        errors = validate(body)
        if errors:
            return self._ledger.answer(received_at, raw, invalid(422, errors), account=arrival.account)
        if faults.rejects(body["to"]):
            return self._ledger.answer(
                received_at, raw, invalid(faults.reject_status, {"to": [NOT_ON_WHATSAPP]}), account=arrival.account
            )
        msg_id = next(self._ids)
        for field in ("imageUrl", "videoUrl", "documentUrl", "audioUrl"):
            if isinstance(body.get(field), str):
                task = asyncio.get_running_loop().create_task(self._fetch(msg_id, field, body[field]))
                self._fetching.add(task)
                task.add_done_callback(self._fetching.discard)
        data = {"msgId": msg_id, "jid": body["to"], "status": "in_progress"}
        if self._webhook is not None:
            self._webhook.message_taken(msg_id, body["to"], arrival.account or "")
        response = JSONResponse({"success": True, "data": data})
        return self._ledger.answer(received_at, raw, response, provider_message_id=str(msg_id), account=arrival.account)

    async def _fetch(self, msg_id: int, field: str, url: str) -> None:
        """Fetch a message's media as the provider would, from this machine only; record what came back."""
        record: dict[str, Any] = {"msg_id": msg_id, "field": field, "url": url, "fetched_at": time.time()}
        if urlsplit(url).hostname not in FETCHABLE_HOSTS:
            self.fetched.append(
                {**record, "status": None, "note": "not fetched: the sandbox reaches this machine only"}
            )
            return
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            self.fetched.append({**record, "status": None, "note": f"fetch failed: {exc!r}"})
            return
        self.fetched.append(
            {
                **record,
                "status": response.status_code,
                "content_type": response.headers.get("content-type"),
                "size": len(response.content),
                "sha256": hashlib.sha256(response.content).hexdigest(),
            }
        )


class WASenderSessionsFake:
    """WASender's account-level session API (``/api/whatsapp-sessions``) with the account's Personal Access
    Token: a created session has its own API key, which the send endpoint then takes (a number of the site's
    own). Pairing: ``connect`` answers NEED_SCAN with a QR code's text; ``POST /_sandbox/wasender/sessions/{id}/scan``
    plays the phone scanning it, and the session is ``connected``."""

    def __init__(self, sender: WASenderFake, personal_access_token: Secret) -> None:
        self._sender = sender
        self._token = BearerKey(personal_access_token)
        self._ids = itertools.count(1)
        self.sessions: dict[int, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/api/whatsapp-sessions", self.create, methods=["POST"]),
            Route("/api/whatsapp-sessions/{session_id:int}", self.one, methods=["GET", "DELETE"]),
            Route("/api/whatsapp-sessions/{session_id:int}/connect", self.connect, methods=["POST"]),
            Route("/_sandbox/wasender/sessions/{session_id:int}/scan", self.scan, methods=["POST"]),
        ]

    def _refused(self, request: Request) -> Response | None:
        if self._token.account(request) is None:
            return message(401, "Unauthenticated." if self._token.present(request) else "API key is required")
        return None

    def _found(self, request: Request) -> dict[str, Any] | None:
        return self.sessions.get(int(request.path_params["session_id"]))

    def _session(self, request: Request) -> dict[str, Any] | Response:
        """The session the path names, or WASender's answer why not (no token, no such session)."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        session = self._found(request)
        return session if session is not None else message(404, "Session not found.")

    async def create(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = parse_json(await request.body())
        body = body if isinstance(body, dict) else {}
        errors: dict[str, list[str]] = {}
        if not isinstance(body.get("name"), str) or not body["name"]:
            errors["name"] = ["The name field is required."]
        if not isinstance(body.get("phone_number"), str) or not _TO.fullmatch(body["phone_number"]):
            errors["phone_number"] = ["The phone number field must be a valid phone number."]
        for flag in ("account_protection", "log_messages"):
            if not isinstance(body.get(flag), bool):
                errors[flag] = [f"The {flag.replace('_', ' ')} field is required."]
        if errors:
            return invalid(422, errors)
        session_id = next(self._ids)
        api_key = secrets.token_hex(32)
        session = {
            "id": session_id,
            "name": body["name"],
            "phone_number": body["phone_number"],
            "status": "disconnected",
            "account_protection": body["account_protection"],
            "log_messages": body["log_messages"],
            "api_key": api_key,
        }
        self.sessions[session_id] = session
        self._sender.accept_key(Secret(api_key))
        return JSONResponse({"success": True, "data": session})

    async def one(self, request: Request) -> Response:
        session = self._session(request)
        if isinstance(session, Response):
            return session
        if request.method == "DELETE":
            del self.sessions[session["id"]]
            self._sender.drop_key(Secret(session["api_key"]))
            return JSONResponse({"success": True, "data": None})
        return JSONResponse({"success": True, "data": {k: v for k, v in session.items() if k != "api_key"}})

    async def connect(self, request: Request) -> Response:
        session = self._session(request)
        if isinstance(session, Response):
            return session
        if session["status"] != "connected":
            session["status"] = "NEED_SCAN"
        qr_code = f"2@{secrets.token_urlsafe(24)},{session['id']}"
        return JSONResponse({"success": True, "data": {"status": session["status"], "qrCode": qr_code}})

    async def scan(self, request: Request) -> Response:
        session = self._found(request)
        if session is None:
            return JSONResponse({"error": "no such session"}, 404)
        session["status"] = "connected"
        return JSONResponse({"status": "connected"})
