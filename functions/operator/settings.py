"""The operator's settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lib.common.settings import ConfigError, Env, Secret

# OPERATOR_NAMESPACES's value for every namespace: cluster-wide is a choice made explicitly, never a default.
ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class OperatorSettings:
    notify_api_url: str
    admin_token: Secret
    # What goes into each site's Secret as NOTIFY_API_URL: the address the Frappe site calls.
    public_api_url: str
    # Empty: every namespace (cluster-wide, OPERATOR_NAMESPACES=*).
    namespaces: tuple[str, ...]
    # Where FrappeSites mirroring REST-registered sites are created; empty: no mirroring.
    mirror_namespace: str
    sync_interval_s: float
    mirror_interval_s: float
    request_timeout_s: float
    http_host: str
    http_port: int
    log_level: str

    @property
    def watched_namespaces(self) -> tuple[str, ...]:
        """What the operator watches: the configured namespaces plus the mirror namespace (mirrored FrappeSites
        must be reconciled too); empty means the whole cluster."""
        if not self.namespaces or not self.mirror_namespace or self.mirror_namespace in self.namespaces:
            return self.namespaces
        return (*self.namespaces, self.mirror_namespace)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        env = Env(environ)
        api_url = env.text("NOTIFY_API_URL", "http://127.0.0.1:8080").rstrip("/")
        return cls(
            notify_api_url=api_url,
            admin_token=env.secret("NOTIFY_ADMIN_TOKEN"),
            public_api_url=(env.text("NOTIFY_PUBLIC_API_URL", "") or api_url).rstrip("/"),
            namespaces=watch_namespaces(env.text("OPERATOR_NAMESPACES")),
            mirror_namespace=env.text("OPERATOR_MIRROR_NAMESPACE", ""),
            sync_interval_s=env.number("OPERATOR_SYNC_INTERVAL_SECONDS", 60.0, minimum=1),
            mirror_interval_s=env.number("OPERATOR_MIRROR_INTERVAL_SECONDS", 30.0, minimum=1),
            request_timeout_s=env.number("OPERATOR_REQUEST_TIMEOUT_SECONDS", 10.0, minimum=0.1),
            http_host=env.text("OPERATOR_HTTP_HOST", "127.0.0.1"),
            http_port=env.integer("OPERATOR_HTTP_PORT", 8080, minimum=1),
            log_level=env.text("LOG_LEVEL", "INFO"),
        )


def watch_namespaces(raw: str) -> tuple[str, ...]:
    """OPERATOR_NAMESPACES: comma-separated namespaces, or `*` alone for every namespace (the empty tuple)."""
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    if names == (ALL_NAMESPACES,):
        return ()
    if not names or ALL_NAMESPACES in names:
        raise ConfigError(
            f"OPERATOR_NAMESPACES must be comma-separated namespaces, or {ALL_NAMESPACES} alone for every namespace;"
            f" got {raw!r}"
        )
    return names
