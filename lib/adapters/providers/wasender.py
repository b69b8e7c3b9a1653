"""WASender API: ``POST {base}/send-message`` with a Bearer session key and ``{"to", "text"}``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Self

import httpx

from lib.adapters.providers import error_for_response, error_for_transport, http_client
from lib.common.settings import Env, Secret
from lib.domain.notification import OutgoingMessage

DEFAULT_URL = "https://www.wasenderapi.com/api"


@dataclass(frozen=True)
class WASenderSettings:
    api_key: Secret
    api_url: str = DEFAULT_URL

    @classmethod
    def from_env(cls, env: Env) -> WASenderSettings:
        return cls(
            api_key=env.secret("WASENDER_API_KEY"), api_url=env.text("WASENDER_API_URL", DEFAULT_URL).rstrip("/")
        )

    def with_api_key(self, api_key: Secret) -> Self:
        return replace(self, api_key=api_key)

    def connect(self, *, timeout_s: float, max_connections: int) -> WASenderProvider:
        return WASenderProvider(self, timeout_s=timeout_s, max_connections=max_connections)


class WASenderProvider:
    name = "wasender"

    def __init__(self, settings: WASenderSettings, *, timeout_s: float, max_connections: int) -> None:
        self._client = http_client(timeout_s, max_connections)
        self._url = f"{settings.api_url}/send-message"
        self._headers = {"Authorization": f"Bearer {settings.api_key.reveal()}", "Content-Type": "application/json"}

    async def send(self, message: OutgoingMessage) -> str:
        try:
            response = await self._client.post(
                self._url, json={"to": message.content.recipient, "text": message.content.body}, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise error_for_transport(self.name, exc) from exc
        return read_answer(response)

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
