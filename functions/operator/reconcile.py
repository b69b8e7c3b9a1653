"""What the operator does for one FrappeSite, as plain async functions over two small interfaces (notify's admin
API and the Secret store): the kopf handlers only translate their outcome into status, events and retries.

Ownership: notify records who manages a site (``managed_by``). A FrappeSite writes ``k8s:<ns>/<name>/<uid>``
there when it registers or claims a site, so a retry after a crash recognises its own registration (and never
registers twice), and a second FrappeSite with the same site name gets a clear conflict instead of a fight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.operator.notify_client import NotifyRejected, NotifyUnavailable
from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from lib.domain.vocabulary import CHANNELS, SiteStatus

ROTATE_ANNOTATION = "notify.dev/rotate-key"
MIRRORED_LABEL = "notify.dev/mirrored"
KEY_FIELD = "NOTIFY_API_KEY"
SITE_ID_FIELD = "NOTIFY_SITE_ID"


class SecretConflict(Exception):
    """The Secret's name is taken by a Secret this FrappeSite does not own: never overwrite it."""


class ProviderKeyMissing(Exception):
    """spec.providerAccounts names a Secret (or a key in it) that is not there."""


class NotifyApi(Protocol):
    async def site(self, site_name: str) -> dict[str, Any] | None: ...
    async def register(self, site_name: str, site_url: str | None, managed_by: str) -> dict[str, Any]: ...
    async def update(self, site_name: str, changes: dict[str, Any]) -> dict[str, Any]: ...
    async def rotate_key(self, site_name: str) -> dict[str, Any]: ...
    async def senders(self, site_name: str) -> dict[str, Any]: ...
    async def set_senders(self, site_name: str, senders: dict[str, Any]) -> dict[str, Any]: ...
    async def provider_accounts(self, site_name: str) -> dict[str, Any]: ...
    async def set_provider_key(self, site_name: str, channel: str, api_key: Secret) -> dict[str, Any]: ...


class SecretStore(Protocol):
    async def read(self, name: str) -> Mapping[str, str] | None:
        """The Secret's decoded data; None if absent; SecretConflict if someone else's."""

    async def write(self, name: str, data: Mapping[str, str]) -> None: ...

    async def value(self, name: str, key: str) -> Secret | None:
        """One key of a Secret the spec refers to (any owner, the FrappeSite's namespace); None if absent."""


@dataclass(frozen=True)
class FrappeSiteView:
    """The parts of a FrappeSite the reconciliation reads."""

    namespace: str
    name: str
    uid: str
    site_name: str
    site_url: str | None
    channels: tuple[str, ...]
    rate_limit_per_minute: int | None
    suspended: bool
    secret_name: str
    mirrored: bool
    rotation_requested: str | None
    rotation_done: str | None
    known_site_id: str | None
    senders: dict[str, Any] | None = None  # the admin API's body for spec.senders; None: left as notify has it
    # spec.providerAccounts: (channel, Secret name, key in it) of each channel the site has its own key for
    provider_keys: tuple[tuple[str, str, str], ...] = ()

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> FrappeSiteView:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            site_name=spec["siteName"],
            site_url=spec.get("siteUrl"),
            channels=tuple(sorted(set(spec.get("enabledChannels", CHANNELS)))),
            rate_limit_per_minute=spec.get("rateLimitPerMinute"),
            suspended=bool(spec.get("suspended", False)),
            secret_name=spec.get("secretName") or f"{meta['name']}-notify",
            mirrored=(meta.get("labels") or {}).get(MIRRORED_LABEL) == "true",
            rotation_requested=(meta.get("annotations") or {}).get(ROTATE_ANNOTATION),
            rotation_done=status.get("keyRotation"),
            known_site_id=status.get("siteId"),
            senders=senders_body(spec["senders"]) if spec.get("senders") is not None else None,
            provider_keys=tuple(
                (channel, ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                for channel, ref in sorted((spec.get("providerAccounts") or {}).items())
            ),
        )

    @property
    def manager(self) -> str:
        return f"k8s:{self.namespace}/{self.name}/{self.uid}"


@dataclass
class Outcome:
    """The state to publish in the FrappeSite's status, and the events to record on it."""

    phase: str  # Pending | Ready | Suspended | Error
    reason: str
    message: str
    site_id: str | None = None
    secret_name: str | None = None
    key_rotation: str | None = None
    events: list[tuple[str, str]] = field(default_factory=list)  # (reason, message), informational

    @property
    def ready(self) -> bool:
        return self.phase in ("Ready", "Suspended")


def describe_manager(managed_by: str | None) -> str:
    if managed_by is None:
        return "it was registered through notify's REST API"
    if managed_by.startswith("k8s:"):
        return f"it is managed by the FrappeSite {managed_by[4:].rsplit('/', 1)[0]}"
    return f"it is managed by {managed_by!r}"


def senders_body(spec: Mapping[str, Any]) -> dict[str, Any]:
    """spec.senders (camelCase, as Kubernetes objects are written) as the admin API's senders body."""

    def sender(value: Mapping[str, Any]) -> dict[str, Any]:
        found = {"email": value.get("address"), "name": value.get("name"), "reply_to": value.get("replyTo")}
        return {k: v for k, v in found.items() if v is not None}

    default = spec.get("default")
    return {
        "default": sender(default) if default else None,
        "allowed": [sender(s) for s in spec.get("allowed") or []],
        "domains": list(spec.get("domains") or []),
    }


def secret_data(site: Mapping[str, Any], api_key: str, api_url: str) -> dict[str, str]:
    return {
        KEY_FIELD: api_key,
        SITE_ID_FIELD: site["site_id"],
        "NOTIFY_SITE_NAME": site["site_name"],
        "NOTIFY_API_URL": api_url,
    }


def wanted_changes(fs: FrappeSiteView, site: Mapping[str, Any]) -> dict[str, Any]:
    """The admin PATCH that makes the site match the spec (empty when it already does)."""
    wanted: dict[str, Any] = {
        "status": SiteStatus.SUSPENDED if fs.suspended else SiteStatus.ACTIVE,
        "enabled_channels": list(fs.channels),
        "rate_limit_per_minute": fs.rate_limit_per_minute,
        "managed_by": fs.manager,
    }
    if fs.site_url:
        wanted["site_url"] = fs.site_url
    current = {**site, "enabled_channels": sorted(site["enabled_channels"])}
    return {k: v for k, v in wanted.items() if current.get(k) != v}


async def apply_provider_keys(fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore) -> list[str]:
    """Give the site the provider keys its spec refers to (by fingerprint: a key already set is not sent again);
    the channels whose key changed."""
    if not fs.provider_keys:
        return []
    current = {a["channel"]: a["key_fingerprint"] for a in (await notify.provider_accounts(fs.site_name))["items"]}
    changed = []
    for channel, secret_name, key in fs.provider_keys:
        api_key = await secrets.value(secret_name, key)
        if api_key is None:
            raise ProviderKeyMissing(f"spec.providerAccounts.{channel}: no key {key!r} in Secret {secret_name}")
        if current.get(channel) != fingerprint(api_key):
            await notify.set_provider_key(fs.site_name, channel, api_key)
            changed.append(channel)
    return changed


async def apply_spec(fs: FrappeSiteView, notify: NotifyApi, site: dict[str, Any]) -> dict[str, Any]:
    changes = wanted_changes(fs, site)
    if changes:
        if "managed_by" not in changes:
            changes["managed_by"] = fs.manager  # the claim guards every change: never edit a site someone else took
        site = await notify.update(fs.site_name, changes)
    if fs.senders is not None:
        # Compared with what notify stores (addresses in their ASCII form): a spec written with an IDN domain is
        # sent again on each run, which changes nothing.
        current = {k: v for k, v in (await notify.senders(fs.site_name)).items() if k != "site_id"}
        if current != fs.senders:
            await notify.set_senders(fs.site_name, fs.senders)
    return site


def settled(fs: FrappeSiteView, site: Mapping[str, Any], events: list[tuple[str, str]], *, secret: bool) -> Outcome:
    suspended = site["status"] == SiteStatus.SUSPENDED
    return Outcome(
        phase="Suspended" if suspended else "Ready",
        reason="Suspended" if suspended else "Synced",
        message=f"site {fs.site_name} is {site['status']} in notify",
        site_id=site["site_id"],
        secret_name=fs.secret_name if secret else None,
        key_rotation=fs.rotation_requested,
        events=events,
    )


def failed(reason: str, message: str, site: Mapping[str, Any] | None = None) -> Outcome:
    return Outcome(phase="Error", reason=reason, message=message, site_id=site["site_id"] if site else None)


async def write_new_key(
    fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore, site: Mapping[str, Any], api_url: str
) -> None:
    rotated = await notify.rotate_key(fs.site_name)
    await secrets.write(fs.secret_name, secret_data(site, rotated["api_key"], api_url))


async def reconcile(fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore, api_url: str) -> Outcome:
    """Make notify and the Secret match the FrappeSite. Safe to run any number of times, from any point a
    previous run stopped at. Raises NotifyUnavailable when it is worth trying again later."""
    try:
        site = await notify.site(fs.site_name)
        if fs.mirrored:
            return await _mirrored(fs, notify, site)
        if site is None and fs.known_site_id:
            return failed("SiteGone", f"site {fs.site_name} was deleted from notify outside Kubernetes")
        data = await secrets.read(fs.secret_name)  # a foreign Secret in the way fails here, before any change
        if site is None:
            return await _register(fs, notify, secrets, api_url)
        if site["managed_by"] == fs.manager:
            if site["status"] == SiteStatus.DEACTIVATED:
                return failed(
                    "SiteDeactivated",
                    f"site {fs.site_name} was deactivated outside Kubernetes; delete and re-create this "
                    "FrappeSite to register it again",
                    site,
                )
            return await _owned(fs, notify, secrets, site, data, api_url)
        if site["status"] == SiteStatus.DEACTIVATED:
            return await _take_over(fs, notify, secrets, site, api_url)
        return failed(
            "SiteNameConflict",
            f"site {fs.site_name} already exists in notify: {describe_manager(site['managed_by'])}",
            site,
        )
    except SecretConflict as exc:
        return failed("SecretConflict", str(exc))
    except ProviderKeyMissing as exc:
        return failed("ProviderKeyMissing", str(exc))
    except NotifyRejected as exc:
        return failed("NotifyRejected", exc.message)


async def _register(fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore, api_url: str) -> Outcome:
    try:
        registered = await notify.register(fs.site_name, fs.site_url, fs.manager)
    except NotifyRejected as exc:
        if exc.code == "site_exists":  # registered between our read and now: decide again on a fresh read
            raise NotifyUnavailable(f"site {fs.site_name} appeared while registering it") from exc
        raise
    await secrets.write(fs.secret_name, secret_data(registered, registered["api_key"], api_url))
    site = await apply_spec(fs, notify, registered)
    events = [("Registered", f"registered site {fs.site_name}; its key is in Secret {fs.secret_name}")]
    return settled(fs, site, events + await _provider_key_events(fs, notify, secrets), secret=True)


async def _owned(
    fs: FrappeSiteView,
    notify: NotifyApi,
    secrets: SecretStore,
    site: dict[str, Any],
    data: Mapping[str, str] | None,
    api_url: str,
) -> Outcome:
    events = []
    if not data or not data.get(KEY_FIELD) or data.get(SITE_ID_FIELD) != site["site_id"]:
        # Ours, but its key never reached the Secret (a crash right after registering) or the Secret was lost:
        # nobody holds a working copy, so a new key breaks no one.
        await write_new_key(fs, notify, secrets, site, api_url)
        events.append(("KeyIssued", f"the Secret {fs.secret_name} had no key for the site: issued a new one"))
    elif fs.rotation_requested and fs.rotation_requested != fs.rotation_done:
        await write_new_key(fs, notify, secrets, site, api_url)
        events.append(("KeyRotated", f"rotated the key ({ROTATE_ANNOTATION}={fs.rotation_requested})"))
    site = await apply_spec(fs, notify, site)
    return settled(fs, site, events + await _provider_key_events(fs, notify, secrets), secret=True)


async def _take_over(
    fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore, site: dict[str, Any], api_url: str
) -> Outcome:
    # A deactivated site can be claimed (the API refuses otherwise); the claim comes before the new key, so a
    # crash in between leaves it ours and the next run issues the key (see _owned).
    site = await apply_spec(fs, notify, site)
    await write_new_key(fs, notify, secrets, site, api_url)
    events = [("SiteReactivated", f"took over the deactivated site {fs.site_name}; a new key is in {fs.secret_name}")]
    return settled(fs, site, events + await _provider_key_events(fs, notify, secrets), secret=True)


async def _provider_key_events(fs: FrappeSiteView, notify: NotifyApi, secrets: SecretStore) -> list[tuple[str, str]]:
    changed = await apply_provider_keys(fs, notify, secrets)
    return [("ProviderKeySet", f"the site's own {c} provider key was set from its Secret") for c in changed]


async def _mirrored(fs: FrappeSiteView, notify: NotifyApi, site: dict[str, Any] | None) -> Outcome:
    if site is None or site["status"] == SiteStatus.DEACTIVATED:
        gone = "deleted" if site is None else "deactivated"
        return failed("SiteGone", f"site {fs.site_name} was {gone} outside Kubernetes", site)
    if site["managed_by"] not in (None, fs.manager):
        return failed("SiteNameConflict", f"site {fs.site_name}: {describe_manager(site['managed_by'])}", site)
    site = await apply_spec(fs, notify, site)
    return settled(fs, site, [], secret=False)


async def finalize(fs: FrappeSiteView, notify: NotifyApi) -> str:
    """Deactivate the site before its FrappeSite goes away, if it is this FrappeSite's. Says what it did."""
    site = await notify.site(fs.site_name)
    if site is None or site["managed_by"] != fs.manager:
        return f"site {fs.site_name} is not managed by this FrappeSite: left as it is"
    if site["status"] == SiteStatus.DEACTIVATED:
        return f"site {fs.site_name} was already deactivated"
    try:
        await notify.update(fs.site_name, {"status": SiteStatus.DEACTIVATED, "managed_by": fs.manager})
    except NotifyRejected as exc:
        if exc.code == "site_managed_elsewhere":
            return f"site {fs.site_name} was claimed by someone else meanwhile: left as it is"
        raise
    return f"deactivated site {fs.site_name}"
