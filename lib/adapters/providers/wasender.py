"""WASender API: ``POST {base}/send-message`` with a Bearer session key and ``{"to", "text"}``."""

from __future__ import annotations

from dataclasses import dataclass

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
        if response.is_success:
            try:
                data = response.json()
                if data.get("success") is not False:
                    return str((data.get("data") or {}).get("msgId", ""))
            except ValueError:
                pass
        raise error_for_response(self.name, response, _wasender_error(response))

    async def aclose(self) -> None:
        await self._client.aclose()


def _wasender_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = str(body.get("message") or "")
        errors = body.get("errors")
        return f"{message} {errors}" if errors else message or response.text[:300]
    except (ValueError, AttributeError):
        return response.text[:300]
