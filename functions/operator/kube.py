"""The few Kubernetes API calls the operator makes besides kopf's own: Secrets and FrappeSites.

Logged in with the same credentials kopf finds (kubeconfig, or the pod's ServiceAccount), over httpx."""

from __future__ import annotations

import base64
import ssl
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import kopf

from functions.operator.reconcile import SecretConflict
from lib.common.settings import Secret

GROUP, VERSION, PLURAL = "notify.dev", "v1alpha1", "frappesites"


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason


def _pem(data: str | bytes) -> bytes:
    # kubeconfig's *-data fields are base64 of the PEM text.
    return base64.b64decode(data)


def _load_client_cert(context: ssl.SSLContext, info: kopf.ConnectionInfo) -> None:
    if info.certificate_path and info.private_key_path:
        context.load_cert_chain(str(info.certificate_path), str(info.private_key_path))
    elif info.certificate_data and info.private_key_data:
        # ssl reads a certificate chain from files only: write them, load them, and never leave the key behind.
        with tempfile.TemporaryDirectory(prefix="kube-") as folder:
            cert, key = Path(folder, "client.crt"), Path(folder, "client.key")
            cert.write_bytes(_pem(info.certificate_data))
            key.write_bytes(_pem(info.private_key_data))
            context.load_cert_chain(str(cert), str(key))


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=_pem(info.ca_data).decode() if info.ca_data else None,
    )
    _load_client_cert(context, info)
    return context


class Kube:
    def __init__(self, info: kopf.ConnectionInfo, *, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {info.token}"} if info.token else {}
        auth = httpx.BasicAuth(info.username, info.password) if info.username and info.password else None
        self._http = httpx.AsyncClient(
            base_url=info.server, headers=headers, auth=auth, verify=ssl_context(info), timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, content_type: str | None = None
    ) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if content_type else None
        response = await self._http.request(method, path, json=body, headers=headers)
        if response.status_code >= 400:
            try:
                status = response.json()
                reason, message = str(status.get("reason", "")), str(status.get("message", ""))
            except ValueError:
                reason, message = "", response.text[:200]
            raise KubeError(response.status_code, reason, message)
        found: dict[str, Any] = response.json()
        return found

    async def served(self) -> bool:
        """Whether the API server serves FrappeSites (their CRD is installed)."""
        try:
            found = await self._call("GET", f"/apis/{GROUP}/{VERSION}")
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return any(r.get("name") == PLURAL for r in found.get("resources", []))

    # --- Secrets -------------------------------------------------------------------------------------------

    async def secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/api/v1/namespaces/{namespace}/secrets", body)

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/v1/namespaces/{namespace}/secrets/{name}"
        return await self._call("PATCH", path, patch, content_type="application/merge-patch+json")

    # --- FrappeSites ---------------------------------------------------------------------------------------

    async def frappesites(self, namespaces: Iterable[str] = ()) -> list[dict[str, Any]]:
        paths = [f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{PLURAL}" for ns in namespaces] or [
            f"/apis/{GROUP}/{VERSION}/{PLURAL}"
        ]
        items: list[dict[str, Any]] = []
        for path in paths:
            items.extend((await self._call("GET", path))["items"])
        return items

    async def create_frappesite(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", body)


class OwnedSecrets:
    """Secrets owned by one FrappeSite (garbage-collected with it); another owner's Secret is never touched."""

    def __init__(self, kube: Kube, owner: kopf.Body) -> None:
        self._kube = kube
        self._owner = owner
        self._namespace = owner.metadata.namespace or ""

    def _ours(self, secret: dict[str, Any]) -> bool:
        refs = secret["metadata"].get("ownerReferences") or []
        return any(ref.get("uid") == self._owner.metadata.uid for ref in refs)

    async def read(self, name: str) -> dict[str, str] | None:
        secret = await self._kube.secret(self._namespace, name)
        if secret is None:
            return None
        if not self._ours(secret):
            raise SecretConflict(f"the Secret {name} exists and does not belong to this FrappeSite: not overwriting it")
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def value(self, name: str, key: str) -> Secret | None:
        secret = await self._kube.secret(self._namespace, name)
        encoded = (secret.get("data") or {}).get(key) if secret is not None else None
        return Secret(base64.b64decode(encoded).decode()) if encoded is not None else None

    async def write(self, name: str, data: Mapping[str, str]) -> None:
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "notify-operator"}},
            "stringData": dict(data),
        }
        kopf.adopt(body, owner=self._owner)
        try:
            await self._kube.create_secret(self._namespace, body)
        except KubeError as exc:
            if exc.status != 409:
                raise
            await self.read(name)  # raises unless it is ours
            await self._kube.patch_secret(self._namespace, name, {"stringData": dict(data)})
