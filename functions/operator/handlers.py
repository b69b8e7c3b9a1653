"""The kopf side: which events run which reconciliation, and how its outcome becomes status, events, metrics
and retries. The decisions themselves are in reconcile.py and mirror.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf
from prometheus_client import Counter

from functions.operator.kube import GROUP, PLURAL, VERSION, Kube, KubeError, OwnedSecrets
from functions.operator.mirror import mirror_sites
from functions.operator.notify_client import NotifyAdmin, NotifyUnavailable
from functions.operator.reconcile import FrappeSiteView, Outcome, finalize, reconcile
from functions.operator.settings import OperatorSettings

log = logging.getLogger("notify.operator")

RECONCILES = Counter(
    "notify_operator_reconciles_total", "FrappeSite reconciliations by trigger and result", ["trigger", "result"]
)
DEACTIVATIONS = Counter("notify_operator_deactivations_total", "Sites deactivated because their FrappeSite was deleted")
MIRRORED = Counter("notify_operator_mirrored_sites_total", "FrappeSites created to mirror REST-registered sites")
MIRROR_PASSES = Counter("notify_operator_mirror_passes_total", "Mirroring passes by result", ["result"])
FINALIZER = f"{GROUP}/deactivate-site"


@dataclass
class OperatorContext:
    """kopf's memo: shared by every handler (kopf copies it shallowly per resource)."""

    settings: OperatorSettings
    notify: NotifyAdmin
    kube: Kube
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def retry_delay(retry: int) -> float:
    """Exponential backoff for TemporaryError: 2, 4, 8, ... seconds, at most a minute."""
    return float(min(2 ** (retry + 1), 60))


def publish(body: kopf.Body, patch: kopf.Patch, outcome: Outcome) -> None:
    """Status from the outcome. The Ready condition's time moves only when its truth changes; an Error is
    recorded as an event when it is new, not on every periodic re-check."""
    previous = {c.get("type"): c for c in body.status.get("conditions", [])}.get("Ready", {})
    truth = "True" if outcome.ready else "False"
    changed = previous.get("status") != truth
    patch.status["phase"] = outcome.phase
    patch.status["observedGeneration"] = body.metadata.get("generation")
    patch.status["lastSyncTime"] = now()
    if outcome.site_id:
        patch.status["siteId"] = outcome.site_id
    if outcome.ready:
        patch.status["secretName"] = outcome.secret_name or ""
        patch.status["mirrored"] = outcome.secret_name is None
        if outcome.key_rotation is not None:
            patch.status["keyRotation"] = outcome.key_rotation
    patch.status["conditions"] = [
        {
            "type": "Ready",
            "status": truth,
            "reason": outcome.reason,
            "message": outcome.message,
            "lastTransitionTime": now() if changed else previous.get("lastTransitionTime", now()),
        }
    ]
    for reason, message in outcome.events:
        kopf.info(body, reason=reason, message=message)
    if outcome.phase == "Error" and (changed or previous.get("reason") != outcome.reason):
        kopf.warn(body, reason=outcome.reason, message=outcome.message)


async def sync(trigger: str, body: kopf.Body, patch: kopf.Patch, memo: OperatorContext, retry: int) -> None:
    fs = FrappeSiteView.from_body(body)
    async with memo.locks[fs.uid]:
        try:
            outcome = await reconcile(fs, memo.notify, OwnedSecrets(memo.kube, body), memo.settings.public_api_url)
        except NotifyUnavailable as exc:
            RECONCILES.labels(trigger, "retry").inc()
            if not body.status.get("phase"):
                patch.status["phase"] = "Pending"
            raise kopf.TemporaryError(str(exc), delay=retry_delay(retry)) from exc
    RECONCILES.labels(trigger, "error" if outcome.phase == "Error" else "ok").inc()
    publish(body, patch, outcome)
    log.info(
        "reconciled",
        extra={"frappesite": f"{fs.namespace}/{fs.name}", "site_id": outcome.site_id, "phase": outcome.phase},
    )


async def on_change(
    body: kopf.Body, patch: kopf.Patch, memo: OperatorContext, retry: int, reason: str, **_: Any
) -> None:
    await sync(str(reason), body, patch, memo, retry)


async def on_timer(body: kopf.Body, patch: kopf.Patch, memo: Any, **kwargs: Any) -> None:
    await sync("timer", body, patch, memo, kwargs["retry"])


async def on_delete(body: kopf.Body, memo: OperatorContext, retry: int, **_: Any) -> None:
    fs = FrappeSiteView.from_body(body)
    try:
        said = await finalize(fs, memo.notify)
    except NotifyUnavailable as exc:
        # The finalizer stays until notify answers: never an active site without its FrappeSite.
        raise kopf.TemporaryError(f"cannot deactivate the site yet: {exc}", delay=retry_delay(retry)) from exc
    if said.startswith("deactivated"):
        DEACTIVATIONS.inc()
    log.info(said, extra={"frappesite": f"{fs.namespace}/{fs.name}"})


async def mirror_once(memo: OperatorContext) -> None:
    settings = memo.settings
    created = await mirror_sites(memo.notify, memo.kube, settings.mirror_namespace, settings.watched_namespaces)
    MIRRORED.inc(len(created))
    for name in created:
        log.info("mirrored a site registered through REST", extra={"site_name": name})


async def mirror_loop(memo: OperatorContext, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await mirror_once(memo)
            MIRROR_PASSES.labels("ok").inc()
        except (KubeError, NotifyUnavailable, httpx.HTTPError) as exc:  # e.g. the server still starting: next pass
            MIRROR_PASSES.labels("error").inc()
            log.warning("mirroring pass failed; the next one retries", extra={"error": str(exc)})
        except Exception:  # the next pass tries again; one bad answer must not end mirroring for good
            MIRROR_PASSES.labels("error").inc()
            log.exception("mirroring pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), memo.settings.mirror_interval_s)


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # Progress and the last-handled spec in our own annotations, so the status stays ours and schema-checked.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    # No watching of CRDs and namespaces (which would need cluster-wide read rights): the FrappeSite resource is
    # discovered once at start (run() checks the CRD is there) and the namespaces are the configured ones.
    settings.scanning.disabled = True
    # A watch the server silently dropped is noticed within minutes, not never.
    settings.watching.server_timeout = 240
    settings.watching.client_timeout = 300
    return settings


def build_registry(settings: OperatorSettings, connection: kopf.ConnectionInfo) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection

    kopf.on.resume(*resource, registry=registry)(on_change)
    kopf.on.create(*resource, registry=registry)(on_change)
    kopf.on.update(*resource, registry=registry)(on_change)
    kopf.on.delete(*resource, registry=registry)(on_delete)
    kopf.timer(*resource, registry=registry, interval=settings.sync_interval_s, initial_delay=settings.sync_interval_s)(
        on_timer
    )
    return registry
