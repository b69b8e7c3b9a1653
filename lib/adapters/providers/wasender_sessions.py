"""WASender's account-level session API, with the account's Personal Access Token: a WhatsApp number of its own
for a site is a WASender session, created here, paired by scanning its QR code, and used through its own API key.

- ``POST /api/whatsapp-sessions`` ``{name, phone_number, account_protection, log_messages}`` -> the session,
  with its ``api_key``;
- ``POST /api/whatsapp-sessions/{id}/connect`` -> ``{status: NEED_SCAN, qrCode}`` (the QR code's text);
- ``GET /api/whatsapp-sessions/{id}`` -> the session and its ``status``;
- ``DELETE /api/whatsapp-sessions/{id}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from lib.adapters.providers import error_for_response, error_for_transport
from lib.common.settings import Env, Secret
from lib.domain.errors import Conflict, NotifyError, Unavailable

DEFAULT_URL = "https://www.wasenderapi.com/api"


@dataclass(frozen=True)
class WASenderAccountSettings:
    """The API's view of the WASender account: where it is and its Personal Access Token (None: no sessions)."""

    api_url: str = DEFAULT_URL
    personal_access_token: Secret | None = None

    @classmethod
    def from_env(cls, env: Env) -> WASenderAccountSettings:
        token = env.text("WASENDER_PERSONAL_ACCESS_TOKEN", "")
        return cls(env.text("WASENDER_API_URL", DEFAULT_URL).rstrip("/"), Secret(token) if token else None)


@dataclass(frozen=True)
class Session:
    session_id: int
    phone_number: str
    status: str
    api_key: Secret | None = None  # only when it was just created

    def public(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "phone_number": self.phone_number, "status": self.status}


class WASenderSessions:
    def __init__(self, settings: WASenderAccountSettings, *, timeout_s: float = 15.0) -> None:
        if settings.personal_access_token is None:
            raise Unavailable(
                "WhatsApp sessions need WASENDER_PERSONAL_ACCESS_TOKEN on the API", code="sessions_not_configured"
            )
        self._base = f"{settings.api_url}/whatsapp-sessions"
        self._headers = {"Authorization": f"Bearer {settings.personal_access_token.reveal()}"}
        self._timeout_s = timeout_s

    async def _call(self, method: str, path: str = "", body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.request(method, f"{self._base}{path}", json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            raise _unavailable(error_for_transport("wasender", exc)) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not response.is_success or not isinstance(answer, dict) or answer.get("success") is False:
            detail = str(answer.get("message") if isinstance(answer, dict) else "") or response.text[:300]
            raise _unavailable(error_for_response("wasender", response, detail))
        data = answer.get("data")
        return data if isinstance(data, dict) else {}

    async def create(self, name: str, phone_number: str) -> Session:
        body = {"name": name, "phone_number": phone_number, "account_protection": True, "log_messages": False}
        data = await self._call("POST", "", body)
        key = data.get("api_key")
        return Session(
            int(data["id"]),
            str(data.get("phone_number", phone_number)),
            str(data.get("status", "")),
            Secret(key) if isinstance(key, str) else None,
        )

    async def connect(self, session_id: int) -> dict[str, Any]:
        """Start pairing: the status (NEED_SCAN) and the QR code's text for the phone to scan."""
        data = await self._call("POST", f"/{session_id}/connect")
        return {"status": str(data.get("status", "")), "qr_code": data.get("qrCode")}

    async def get(self, session_id: int) -> Session:
        data = await self._call("GET", f"/{session_id}")
        return Session(session_id, str(data.get("phone_number", "")), str(data.get("status", "")))

    async def delete(self, session_id: int) -> None:
        await self._call("DELETE", f"/{session_id}")


def _unavailable(error: NotifyError) -> NotifyError:
    """WASender's answer as the API's: a temporary failure is a 503; a refusal (a number it will not take, a
    plan's session limit) a 409 wasender_refused with its message: the admin's request is what it refused."""
    if error.temporary:
        return Unavailable(f"WASender is unavailable: {error.message}", code="wasender_unavailable")
    return Conflict(f"WASender refused: {error.message}", code="wasender_refused")
