"""The site a request acts for, once its API key is checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from lib.domain.addresses import SenderPolicy


@dataclass(frozen=True)
class SiteIdentity:
    site_id: UUID
    site_name: str
    status: str
    enabled_channels: tuple[str, ...]
    rate_limit_per_minute: int | None
    senders: SenderPolicy = field(default_factory=SenderPolicy)
    suppression_override: bool = False  # the admin lets its transactional sends past its suppression list
