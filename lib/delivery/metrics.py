"""The worker's Prometheus metrics, in one place (the dashboards read these names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("notify_worker_deliveries_total", "Messages finished, by outcome", ["channel", "outcome"])
PROVIDER_SECONDS = Histogram(
    "notify_worker_provider_seconds",
    "Provider call latency",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter("notify_worker_retries_total", "Provider calls retried after a temporary failure", ["channel"])
DEAD_LETTERED = Counter("notify_worker_dead_lettered_total", "Records written to the dead-letter topic", ["channel"])
POSSIBLE_RESENDS = Counter(
    "notify_worker_possible_resends_total",
    "Sends that may repeat one the provider already has: takeovers of an expired claim, retries after no answer",
    ["channel"],
)
CIRCUIT_STATE = Gauge("notify_worker_circuit_state", "0 closed, 1 half-open, 2 open", ["channel"])
SITE_ACCOUNT_AUTH_FAILED = Counter(
    "notify_worker_site_account_auth_failures_total",
    "Messages failed because a site's own provider key was refused (401/403), by site",
    ["channel", "site_id"],
)
