"""SendGrid v3 Mail Send.

The request body is built with the official ``sendgrid`` package's mail helpers (its model of the v3 API);
it travels over a shared ``httpx.AsyncClient``, because the package's own transport is blocking urllib with
a new connection per call, which would need a thread per in-flight message.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any, Self

import httpx
from sendgrid.helpers.mail import (
    Attachment,
    ContentId,
    CustomArg,
    Disposition,
    FileContent,
    FileName,
    FileType,
    From,
    Mail,
    ReplyTo,
    To,
)

from lib.adapters.providers import error_for_response, error_for_transport, http_client
from lib.common.settings import ConfigError, Env, Secret
from lib.domain.addresses import Sender, quoted_display_name
from lib.domain.notification import OutgoingMessage

DEFAULT_URL = "https://api.sendgrid.com"


@dataclass(frozen=True)
class SendGridSettings:
    api_key: Secret
    api_url: str = DEFAULT_URL
    sender: str = ""
    sender_name: str = ""
    reply_to: str = ""

    @classmethod
    def from_env(cls, env: Env) -> SendGridSettings:
        sender = env.text("SENDGRID_FROM")
        if "@" not in sender:
            raise ConfigError(f"SENDGRID_FROM must be an email address, got {sender!r}")
        return cls(
            api_key=env.secret("SENDGRID_API_KEY"),
            api_url=env.text("SENDGRID_API_URL", DEFAULT_URL).rstrip("/"),
            sender=sender,
            sender_name=env.text("SENDGRID_FROM_NAME", ""),
            reply_to=env.text("SENDGRID_REPLY_TO", ""),
        )

    def with_api_key(self, api_key: Secret) -> Self:
        return replace(self, api_key=api_key)

    def connect(self, *, timeout_s: float, max_connections: int) -> SendGridProvider:
        return SendGridProvider(self, timeout_s=timeout_s, max_connections=max_connections)


def mail_body(settings: SendGridSettings, message: OutgoingMessage) -> dict[str, Any]:
    """The v3 body. From: the message's sender (its site's), else this account's. Reply-To: the message's own
    (metadata.reply_to), else its sender's, else this account's."""
    content = message.content
    sender = content.sender or Sender(settings.sender, settings.sender_name or None, settings.reply_to or None)
    mail = Mail(
        from_email=From(sender.email, quoted_display_name(sender.name) if sender.name else None),
        to_emails=To(content.recipient),
        subject=content.subject,
        plain_text_content=content.body,
        html_content=content.html,
    )
    reply_to = content.metadata.get("reply_to") or sender.reply_to
    if isinstance(reply_to, str) and "@" in reply_to:
        mail.reply_to = ReplyTo(reply_to)
    # A file with a content-id is an inline image (the html shows it as cid:...); the others are attached. The
    # helper puts each one added first in the list: added last to first, they go out in the message's order.
    for file in reversed(message.files):
        mail.add_attachment(
            Attachment(
                FileContent(base64.b64encode(file.content or b"").decode()),
                FileName(file.filename),
                FileType(file.content_type),
                Disposition("inline" if file.content_id else "attachment"),
                ContentId(file.content_id) if file.content_id else None,
            )
        )
    # custom_args come back in SendGrid's event webhooks: how a later DELIVERED/BOUNCED finds the message.
    mail.custom_arg = [CustomArg("notify_message_id", message.message_id), CustomArg("notify_site_id", message.site_id)]
    body: dict[str, Any] = mail.get()
    return body


class SendGridProvider:
    name = "sendgrid"

    def __init__(self, settings: SendGridSettings, *, timeout_s: float, max_connections: int) -> None:
        self._settings = settings
        self._client = http_client(timeout_s, max_connections)
        self._url = f"{settings.api_url}/v3/mail/send"
        self._headers = {"Authorization": f"Bearer {settings.api_key.reveal()}", "Content-Type": "application/json"}

    async def send(self, message: OutgoingMessage) -> str:
        try:
            response = await self._client.post(
                self._url, json=mail_body(self._settings, message), headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, exc) from exc
        return read_answer(response)

    async def aclose(self) -> None:
        await self._client.aclose()


def read_answer(response: httpx.Response) -> str:
    """SendGrid's answer to a mail send: its message id (202), or the DeliveryError it means."""
    if response.status_code == 202:
        return response.headers.get("x-message-id") or ""
    raise error_for_response(SendGridProvider.name, response, _sendgrid_errors(response))


def _sendgrid_errors(response: httpx.Response) -> str:
    """The errors SendGrid lists ({"errors": [{"field", "message"}]}), or the start of whatever else it sent."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list):
        found = "; ".join(
            f"{e.get('field') or '-'}: {e.get('message')}" if isinstance(e, dict) else str(e) for e in errors
        )
        if found:
            return found
    return response.text[:300]
