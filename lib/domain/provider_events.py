"""Provider events after SENT, as notify reads them: SendGrid's Event Webhook batches become ``ProviderEvent``s,
and the status a message ends in follows its latest status-bearing event by the provider's own clock.

- ``delivered`` -> DELIVERED; a hard ``bounce`` -> BOUNCED; ``dropped`` -> FAILED (the provider refused to send);
- WASender's ``messages.update``: delivered -> DELIVERED, read (and played) -> READ, error -> FAILED;
- ``processed``, ``deferred``, a soft bounce (``type: blocked``), ``open``, ``click``, ``spamreport``,
  ``unsubscribe`` are events of the timeline, not statuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from lib.domain.vocabulary import MessageStatus

SENDGRID_EVENTS = frozenset(
    {"processed", "delivered", "deferred", "bounce", "dropped", "spamreport", "unsubscribe", "open", "click"}
)
# The statuses a message may move between once the provider has it (SENT and after).
AFTER_SENT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.BOUNCED, MessageStatus.FAILED)


@dataclass(frozen=True)
class ProviderEvent:
    provider: str
    event_id: str
    message_id: UUID | None  # notify's, from custom_args
    provider_message_id: str | None
    event: str
    reason: str | None
    occurred_at: datetime
    payload: dict[str, Any]

    @property
    def status(self) -> MessageStatus | None:
        bounce_type = self.payload.get("type")
        return event_status(self.event, bounce_type if isinstance(bounce_type, str) else None)


def event_status(event: str, bounce_type: str | None) -> MessageStatus | None:
    """The status an event says the message is in, if it says one (a bounce of ``type: blocked`` is soft)."""
    if event == "delivered":
        return MessageStatus.DELIVERED
    if event in ("read", "played"):
        return MessageStatus.READ
    if event == "failed":
        return MessageStatus.FAILED
    if event == "bounce" and (bounce_type or "bounce") == "bounce":
        return MessageStatus.BOUNCED
    if event == "dropped":
        return MessageStatus.FAILED
    return None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def parse_sendgrid_events(body: Any) -> list[ProviderEvent]:
    """A SendGrid Event Webhook batch (a JSON array); an item it cannot read is skipped (ValueError if the batch
    itself is not an array of objects)."""
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise ValueError("a SendGrid event batch is a JSON array of objects")
    found = []
    for item in body:
        event, event_id, timestamp = item.get("event"), item.get("sg_event_id"), item.get("timestamp")
        if event not in SENDGRID_EVENTS or not isinstance(event_id, str) or not isinstance(timestamp, int | float):
            continue
        sg_message_id = item.get("sg_message_id")
        provider_id = sg_message_id.split(".", 1)[0] if isinstance(sg_message_id, str) and sg_message_id else None
        reason = item.get("reason") or item.get("response")
        try:
            occurred = datetime.fromtimestamp(timestamp, UTC)
        except (OverflowError, OSError, ValueError):
            continue
        found.append(
            ProviderEvent(
                "sendgrid",
                event_id[:200],
                _uuid(item.get("notify_message_id")),
                provider_id,
                event,
                str(reason)[:1000] if reason else None,
                occurred,
                item,
            )
        )
    return found


# WASender's message status codes (its messages.update webhook): what notify calls each.
WASENDER_STATUSES = {0: "failed", 1: "pending", 2: "sent", 3: "delivered", 4: "read", 5: "played"}


def parse_wasender_event(body: Any) -> list[ProviderEvent]:
    """A WASender webhook: a ``messages.update`` becomes one event (id: the message and its status, so the same
    update twice is one); other events are not read. Its ``sessionId`` (the session's API key) is never kept."""
    if not isinstance(body, dict):
        raise ValueError("a WASender webhook is a JSON object")
    data = body.get("data")
    update = data.get("update") if isinstance(data, dict) else None
    key = data.get("key") if isinstance(data, dict) else None
    status = update.get("status") if isinstance(update, dict) else None
    timestamp = body.get("timestamp")
    if body.get("event") != "messages.update" or not isinstance(key, dict) or status not in WASENDER_STATUSES:
        return []
    if not isinstance(timestamp, int | float) or key.get("id") is None:
        return []
    try:
        occurred = datetime.fromtimestamp(timestamp / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return []
    provider_id = str(key["id"])[:200]
    kept = {k: v for k, v in body.items() if k != "sessionId"}
    kind = WASENDER_STATUSES[status]
    return [ProviderEvent("wasender", f"{provider_id}:{kind}", None, provider_id, kind, None, occurred, kept)]


def settled_status(events: list[tuple[str, datetime, str | None]]) -> tuple[MessageStatus, str | None] | None:
    """From a message's status-bearing events (status, the provider's time, reason): the one the provider's own
    clock says is last, with its reason; None without any. Equal times: the later one stored wins."""
    if not events:
        return None
    status, _, reason = max(enumerate(events), key=lambda pair: (pair[1][1], pair[0]))[1]
    return MessageStatus(status), reason
