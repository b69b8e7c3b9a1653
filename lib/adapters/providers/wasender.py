"""WASender API: ``POST {base}/send-message`` with a Bearer session key and ``{"to", "text"}``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Self

import httpx

from lib.adapters.providers import DeliveryError, error_for_response, error_for_transport, http_client
from lib.common.settings import Env, Secret
from lib.domain.media_links import signed_link
from lib.domain.notification import OutgoingMessage

DEFAULT_URL = "https://www.wasenderapi.com/api"


@dataclass(frozen=True)
class WASenderSettings:
    api_key: Secret
    api_url: str = DEFAULT_URL
    # Where WASender fetches an uploaded file from: notify's public address and the key its links are signed with.
    public_base_url: str = ""
    media_signing_key: Secret | None = None

    @classmethod
    def from_env(cls, env: Env) -> WASenderSettings:
        signing_key = env.text("NOTIFY_MEDIA_SIGNING_KEY", "")
        return cls(
            api_key=env.secret("WASENDER_API_KEY"),
            api_url=env.text("WASENDER_API_URL", DEFAULT_URL).rstrip("/"),
            public_base_url=env.text("NOTIFY_PUBLIC_API_URL", "").rstrip("/"),
            media_signing_key=Secret(signing_key) if signing_key else None,
        )

    def with_api_key(self, api_key: Secret) -> Self:
        return replace(self, api_key=api_key)

    def connect(self, *, timeout_s: float, max_connections: int) -> WASenderProvider:
        return WASenderProvider(self, timeout_s=timeout_s, max_connections=max_connections)


class WASenderProvider:
    name = "wasender"

    def __init__(self, settings: WASenderSettings, *, timeout_s: float, max_connections: int) -> None:
        self._settings = settings
        self._client = http_client(timeout_s, max_connections)
        self._url = f"{settings.api_url}/send-message"
        self._headers = {"Authorization": f"Bearer {settings.api_key.reveal()}", "Content-Type": "application/json"}

    async def send(self, message: OutgoingMessage) -> str:
        try:
            response = await self._client.post(self._url, json=self._payload(message), headers=self._headers)
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, exc) from exc
        return read_answer(response)

    def _payload(self, message: OutgoingMessage) -> dict[str, Any]:
        """``{"to", "text"}``, and with media its ``{kind}Url`` (the body its caption) and a document's fileName."""
        content = message.content
        payload: dict[str, Any] = {"to": content.recipient, "text": content.body}
        media = content.media
        if media is not None:
            payload[f"{media.kind}Url"] = media.url or self._link(media.attachment_id)
            if media.kind == "document" and media.filename:
                payload["fileName"] = media.filename
        return payload

    def _link(self, attachment_id: uuid.UUID | None) -> str:
        key, base = self._settings.media_signing_key, self._settings.public_base_url
        if attachment_id is None or key is None or not base:
            raise DeliveryError(
                "an uploaded media file needs NOTIFY_PUBLIC_API_URL and NOTIFY_MEDIA_SIGNING_KEY on this worker",
                code="media_link_unavailable",
                temporary=False,
            )
        return signed_link(base, key, attachment_id)

    async def aclose(self) -> None:
        await self._client.aclose()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def read_answer(response: httpx.Response) -> str:
    """WASender's answer to a send-message: its message id ({"success": true, "data": {"msgId": ...}}), or the
    DeliveryError it means (a 2xx saying "success": false is a refusal too)."""
    body = _json_object(response)
    if response.is_success and body.get("success") is not False:
        data = body.get("data")
        return str(data.get("msgId", "")) if isinstance(data, dict) else ""
    raise error_for_response(WASenderProvider.name, response, _wasender_error(response, body))


def _wasender_error(response: httpx.Response, body: dict[str, Any]) -> str:
    message = str(body.get("message") or "")
    errors = body.get("errors")
    return f"{message} {errors}" if errors else message or response.text[:300]
