"""Mirroring: every site notify knows gets a FrappeSite, including those registered through the REST API.

Those get one in the mirror namespace, labelled mirrored and without a key (it was shown once, to whoever
registered the site). Once created, the ordinary reconciliation claims the site for it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from functions.operator.kube import GROUP, VERSION, KubeError
from functions.operator.reconcile import MIRRORED_LABEL
from lib.domain.vocabulary import SiteStatus

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Sites(Protocol):
    async def sites(self) -> list[dict[str, Any]]: ...


class FrappeSites(Protocol):
    async def frappesites(self, namespaces: Iterable[str] = ()) -> list[dict[str, Any]]: ...
    async def create_frappesite(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...


def needs_mirror(site: Mapping[str, Any], known_names: set[str]) -> bool:
    """Registered outside Kubernetes, still alive, and no FrappeSite anywhere names it."""
    return (
        site["managed_by"] is None and site["status"] != SiteStatus.DEACTIVATED and site["site_name"] not in known_names
    )


def resource_name(site_name: str, *, unique: bool = False) -> str:
    """The site name itself when it is a valid object name (it usually is: both are host names)."""
    if _DNS_SUBDOMAIN.match(site_name) and not unique:
        return site_name
    digest = hashlib.sha256(site_name.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9]+", "-", site_name).strip("-")[:200] or "site"
    return f"{base}-{digest}"


def mirrored_frappesite(site: Mapping[str, Any], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "siteName": site["site_name"],
        "enabledChannels": sorted(site["enabled_channels"]),
        "suspended": site["status"] == SiteStatus.SUSPENDED,
    }
    if site.get("site_url"):
        spec["siteUrl"] = site["site_url"]
    if site.get("rate_limit_per_minute"):
        spec["rateLimitPerMinute"] = site["rate_limit_per_minute"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FrappeSite",
        "metadata": {"name": name, "labels": {MIRRORED_LABEL: "true"}},
        "spec": spec,
    }


async def mirror_sites(notify: Sites, kube: FrappeSites, namespace: str, watched: Iterable[str] = ()) -> list[str]:
    """Create the missing mirrored FrappeSites; returns the site names mirrored by this pass."""
    known = {fs["spec"]["siteName"] for fs in await kube.frappesites(watched)}
    created = []
    for site in await notify.sites():
        if not needs_mirror(site, known):
            continue
        try:
            await kube.create_frappesite(namespace, mirrored_frappesite(site, resource_name(site["site_name"])))
        except KubeError as exc:
            if exc.status != 409:
                raise
            # The name is taken by a FrappeSite for another site: a name derived from a hash instead.
            unique = resource_name(site["site_name"], unique=True)
            await kube.create_frappesite(namespace, mirrored_frappesite(site, unique))
        created.append(site["site_name"])
    return created
