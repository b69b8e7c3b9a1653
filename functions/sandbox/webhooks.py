"""The fake SendGrid's Event Webhook: after it takes a message it posts the events SendGrid would (processed,
then delivered, or a hard bounce for a recipient the faults name), as one batch signed exactly as SendGrid signs:
ECDSA P-256 over the timestamp header followed by the raw body, SHA-256, base64 DER in
``X-Twilio-Email-Event-Webhook-Signature`` beside ``X-Twilio-Email-Event-Webhook-Timestamp``.

``PUT /_sandbox/sendgrid/webhook {"url"}`` says where to post (nothing is posted before); ``GET`` shows it and
the public key to configure the receiver with (base64 DER, as SendGrid's settings page shows it). The private
key comes from ``SANDBOX_SENDGRID_WEBHOOK_PRIVATE_KEY`` (PEM) or is made at start.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

BOUNCE_REASON = "550 5.1.1 The email account that you tried to reach does not exist."
POSTABLE_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # the sandbox reaches nothing off this machine


def private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    if not pem:
        return ec.generate_private_key(ec.SECP256R1())
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("SANDBOX_SENDGRID_WEBHOOK_PRIVATE_KEY must be an EC private key")
    return key


def public_key_b64(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def signed_headers(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def events_for(body: dict[str, Any], message_id: str, bounced: bool) -> list[dict[str, Any]]:
    """What SendGrid posts for one accepted message: each recipient processed, then delivered or bounced; the
    custom_args at the top of each event."""
    custom: dict[str, Any] = {}
    for args in [body.get("custom_args"), *(p.get("custom_args") for p in body.get("personalizations") or [])]:
        custom.update(args if isinstance(args, dict) else {})
    now = int(time.time())
    events = []
    for personalization in body.get("personalizations") or []:
        for to in personalization.get("to") or []:
            email = to.get("email") if isinstance(to, dict) else None
            base = {**custom, "email": email, "sg_message_id": f"{message_id}.filter0001.1.0"}
            events.append({**base, "event": "processed", "timestamp": now, "sg_event_id": secrets.token_urlsafe(16)})
            last = (
                {"event": "bounce", "type": "bounce", "reason": BOUNCE_REASON, "status": "5.1.1"}
                if bounced
                else {"event": "delivered", "response": "250 OK"}
            )
            events.append({**base, **last, "timestamp": now + 1, "sg_event_id": secrets.token_urlsafe(16)})
    return events


class WebhookSender:
    """Where a fake provider posts its webhook (``GET|PUT /_sandbox/{provider}/webhook {"url"}``, this machine only;
    nothing is posted before), what each post was answered, and the posts in flight, off the send's own answer."""

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self.url: str | None = None
        self.posted: list[dict[str, Any]] = []  # each post's answer, for tests
        self._tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        return [Route(f"/_sandbox/{self._provider}/webhook", self.settings, methods=["GET", "PUT"])]

    def shown(self) -> dict[str, Any]:
        return {"url": self.url, "posted": self.posted}

    async def settings(self, request: Request) -> Response:
        if request.method == "PUT":
            data = await request.json()
            url = data.get("url") if isinstance(data, dict) else None
            if url is not None and (not isinstance(url, str) or urlsplit(url).hostname not in POSTABLE_HOSTS):
                return JSONResponse({"error": "url must be on this machine (the sandbox reaches nothing else)"}, 422)
            self.url = url
        return JSONResponse(self.shown())

    def _spawn(self, post: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        if self.url is None:
            return
        task = asyncio.get_running_loop().create_task(post(self.url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class EventWebhook(WebhookSender):
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        super().__init__("sendgrid")
        self._key = key

    def shown(self) -> dict[str, Any]:
        return {**super().shown(), "public_key": public_key_b64(self._key)}

    def message_taken(self, body: dict[str, Any], message_id: str, bounced: bool) -> None:
        """Post its events soon, as SendGrid does."""
        events = events_for(body, message_id, bounced)
        self._spawn(lambda url: self._post(url, events))

    async def _post(self, url: str, events: list[dict[str, Any]]) -> None:
        await asyncio.sleep(0.05)
        raw = json.dumps(events).encode()
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(url, content=raw, headers=signed_headers(self._key, raw))
            self.posted.append({"events": len(events), "status": response.status_code})
        except httpx.HTTPError as exc:
            self.posted.append({"events": len(events), "status": None, "error": repr(exc)})


class StatusWebhook(WebhookSender):
    """The fake WASender's webhook: for each message it takes, ``messages.update`` with status 2 (sent), then 3
    (delivered), each with ``X-Webhook-Signature`` set to the webhook secret, as WASender sends it."""

    def __init__(self, secret: str) -> None:
        super().__init__("wasender")
        self._secret = secret

    def message_taken(self, msg_id: int, to: str, api_key: str) -> None:
        self._spawn(lambda url: self._post(url, msg_id, to, api_key))

    async def _post(self, url: str, msg_id: int, to: str, api_key: str) -> None:
        await asyncio.sleep(0.05)
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": self._secret}
        async with httpx.AsyncClient(timeout=10) as client:
            for status in (2, 3):
                update = {
                    "event": "messages.update",
                    "sessionId": api_key,
                    "data": {"update": {"status": status}, "key": {"remoteJid": to, "id": msg_id, "fromMe": True}},
                    "timestamp": int(time.time() * 1000),
                }
                try:
                    response = await client.post(url, content=json.dumps(update).encode(), headers=headers)
                    self.posted.append({"status": status, "answer": response.status_code})
                except httpx.HTTPError as exc:
                    self.posted.append({"status": status, "answer": None, "error": repr(exc)})
                await asyncio.sleep(0.01)
