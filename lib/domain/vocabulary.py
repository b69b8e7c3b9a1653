"""The service's one vocabulary: enums that mirror PostgreSQL's ENUM types (a test compares them to pg_enum).

Every other place takes its names from here: validation, Kafka topics, the OpenAPI document, the CLI, the
operator. They are ``StrEnum``s, so a member is its own string (in JSON, SQL parameters and metric labels).
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """``channel``: how a message travels. A new one also needs its provider adapter and a migration."""

    EMAIL = "email"
    WHATSAPP = "whatsapp"


class MessageStatus(StrEnum):
    """``message_status``: PENDING (accepted) -> PROCESSING (claimed) -> SENT | FAILED. A message with a
    ``send_at`` in the future starts SCHEDULED and becomes PENDING when due; SCHEDULED or PENDING may end
    CANCELLED (the site cancelled it; never sent). DELIVERED, BOUNCED and READ come from provider webhooks."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SENT = "SENT"
    FAILED = "FAILED"
    DELIVERED = "DELIVERED"
    BOUNCED = "BOUNCED"
    READ = "READ"
    CANCELLED = "CANCELLED"


class SiteStatus(StrEnum):
    """``site_status``: only an active site may send."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"


CHANNELS: tuple[Channel, ...] = tuple(Channel)
MESSAGE_STATUSES: tuple[MessageStatus, ...] = tuple(MessageStatus)
SITE_STATUSES: tuple[SiteStatus, ...] = tuple(SiteStatus)
# The SQL type each enum mirrors.
SQL_TYPES = {"channel": Channel, "message_status": MessageStatus, "site_status": SiteStatus}
