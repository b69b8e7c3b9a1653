"""notify's admin API as the operator uses it: register, read, change and rotate sites.

The operator goes through the API, not the database: it needs only the admin token (no PostgreSQL credentials),
and the API process it talks to forgets a suspended or rotated key at once."""

from __future__ import annotations

from typing import Any

import httpx

from lib.common.settings import Secret


class NotifyUnavailable(Exception):
    """Worth retrying: notify is down, overloaded (5xx, 429) or slow."""


class NotifyRejected(Exception):
    """notify said no for a reason retrying will not change (409, 422, ...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({status} {code})")
        self.status = status
        self.code = code
        self.message = message


class NotifyAdmin:
    def __init__(self, base_url: str, admin_token: Secret, *, timeout_s: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {admin_token.reveal()}"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise NotifyUnavailable(f"notify's API is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise NotifyUnavailable(f"notify's API answered {response.status_code}")
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "unknown", response.text[:200]
            raise NotifyRejected(response.status_code, code, message)
        return response.json()

    async def site(self, site_name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self._call("GET", f"/api/v1/admin/sites/{site_name}")
        except NotifyRejected as exc:
            if exc.status == 404:
                return None
            raise
        return found

    async def sites(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self._call("GET", "/api/v1/admin/sites"))["items"]
        return items

    async def register(self, site_name: str, site_url: str | None, managed_by: str) -> dict[str, Any]:
        body = {"site_name": site_name, "managed_by": managed_by}
        if site_url:
            body["site_url"] = site_url
        registered: dict[str, Any] = await self._call("POST", "/api/v1/site/register", body)
        return registered

    async def update(self, site_name: str, changes: dict[str, Any]) -> dict[str, Any]:
        updated: dict[str, Any] = await self._call("PATCH", f"/api/v1/admin/sites/{site_name}", changes)
        return updated

    async def rotate_key(self, site_name: str) -> dict[str, Any]:
        rotated: dict[str, Any] = await self._call("POST", f"/api/v1/admin/sites/{site_name}/rotate-key")
        return rotated

    async def senders(self, site_name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("GET", f"/api/v1/admin/sites/{site_name}/senders")
        return found

    async def set_senders(self, site_name: str, senders: dict[str, Any]) -> dict[str, Any]:
        stored: dict[str, Any] = await self._call("PUT", f"/api/v1/admin/sites/{site_name}/senders", senders)
        return stored

    async def provider_accounts(self, site_name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call("GET", f"/api/v1/admin/sites/{site_name}/provider-accounts")
        return found

    async def set_provider_key(self, site_name: str, channel: str, api_key: Secret) -> dict[str, Any]:
        path = f"/api/v1/admin/sites/{site_name}/provider-accounts/{channel}"
        stored: dict[str, Any] = await self._call("PUT", path, {"api_key": api_key.reveal()})
        return stored
