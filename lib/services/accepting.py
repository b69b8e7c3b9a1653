"""Accepting notifications: the audit row, then Kafka, for /send (group commit) and /bulk, always within one site.

A 202 means PostgreSQL has the row and Kafka has acknowledged the record (a scheduled message: PostgreSQL has the
row, SCHEDULED, and ``lib.services.scheduling`` publishes it when due). When Kafka refuses or times
out, the row is marked FAILED with ``failure_code = enqueue_failed`` and the client gets a 503; a retry
with the same Idempotency-Key re-opens and re-publishes that same message. A process that dies between
the insert and the publish leaves a PENDING row: ``lib.services.sweeper`` publishes such rows again after a
threshold (a worker's atomic claim makes a duplicate record harmless).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from lib.adapters import db
from lib.adapters.kafka import Publisher, delivery_error, raise_delivery_errors
from lib.common.batching import Batcher
from lib.common.settings import KafkaSettings
from lib.domain.attachments import DEFAULT_MAX_BYTES, AttachmentSpec
from lib.domain.errors import Conflict, Forbidden, NotifyError, PayloadTooLarge, ValidationFailed
from lib.domain.notification import NotificationRecord, NotificationRequest
from lib.domain.validation import attachments_too_large, parse_notification
from lib.domain.vocabulary import CHANNELS, MessageStatus
from lib.services.identity import SiteIdentity

log = logging.getLogger(__name__)

ACCEPTED = Counter("notify_messages_accepted_total", "Messages accepted (202)", ["channel"])
# labels() takes a lock and builds a key on every call: bind each channel's child once.
_ACCEPTED = {channel: ACCEPTED.labels(channel) for channel in CHANNELS}
REJECTED = Counter("notify_messages_rejected_total", "Messages refused, by error code", ["code"])
ENQUEUE_SECONDS = Histogram(
    "notify_enqueue_seconds",
    "Time from insert to Kafka acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
_BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
INSERT_QUEUED_SECONDS = Histogram(
    "notify_insert_batch_queued_seconds",
    "How long a batch's oldest /send waited for the insert slot (batches queued behind one another)",
    buckets=_BATCH_BUCKETS,
)
INSERT_HELD_SECONDS = Histogram(
    "notify_insert_batch_held_seconds", "How long one insert batch held the slot", buckets=_BATCH_BUCKETS
)


def _observe_insert(_size: int, queued_s: float, held_s: float) -> None:
    INSERT_QUEUED_SECONDS.observe(queued_s)
    INSERT_HELD_SECONDS.observe(held_s)


MAX_BULK_ITEMS = 1000
BULK_ITEMS_PER_TURN = 50
DEFAULT_SCHEDULE_HORIZON = timedelta(days=30)


@dataclass(frozen=True)
class Accepted:
    message_id: uuid.UUID
    replayed: bool  # an earlier request with the same Idempotency-Key created it
    status: MessageStatus = MessageStatus.PENDING  # SCHEDULED: stored, published at its send_at


def check_channel(site: SiteIdentity, channel: str) -> None:
    if channel not in site.enabled_channels:
        raise Forbidden(f"the {channel} channel is not enabled for this site", code="channel_disabled")


@dataclass(frozen=True)
class Prepared:
    """A validated notification made ready to store: its id, its record, and the record encoded once (the insert
    reads the row from its text; ``wire`` is the producer's topic, key and value). A ``scheduled`` one is stored
    SCHEDULED and not produced now."""

    message_id: uuid.UUID
    req: NotificationRequest
    record: NotificationRecord
    record_json: str
    wire: tuple[str, bytes, bytes]
    scheduled: bool = False

    @property
    def status(self) -> MessageStatus:
        return MessageStatus.SCHEDULED if self.scheduled else MessageStatus.PENDING


# What storing one item gave: Kafka's pending answer for the inserted (the ids it refused, with their errors),
# None for an idempotency-key replay, or the item's own error.
_Stored = asyncio.Future[dict[uuid.UUID, str]] | NotifyError | None


def _too_large(req: NotificationRequest, room: int, limit: int) -> PayloadTooLarge:
    """The record would be refused by Kafka: name the largest part, by its encoded size."""
    c = req.content
    parts = {"body": c.body, "html": c.html, "subject": c.subject, "metadata": c.metadata}
    sizes = {name: len(json.dumps(v, ensure_ascii=False).encode()) for name, v in parts.items() if v}
    largest = max(sizes, key=lambda name: sizes[name])
    message = (
        f"the message is {-room} bytes over the queue's limit of {limit} bytes (UTF-8, as stored);"
        f" its largest part is {largest} ({sizes[largest]} bytes)"
    )
    return PayloadTooLarge(message, details=[{"field": largest, "code": "too_large", "message": message}])


def _row_json(item: Prepared) -> str:
    """The insert's row: the record's JSON object, with the row's own fields spliced in when there are any (the
    idempotency pair; send_at, and the status SCHEDULED when it is in the future)."""
    req = item.req
    extra: dict[str, Any] = {}
    if req.idempotency_key is not None:
        extra.update(idempotency_key=req.idempotency_key, idempotency_fingerprint=req.fingerprint())
    if req.send_at is not None:
        extra.update(send_at=req.send_at.isoformat(), status=item.status)
    if req.transactional:  # prepare let it through: the site may pass its suppression list
        extra["transactional"] = True
    if not extra:
        return item.record_json
    return f"{item.record_json[:-1]},{json.dumps(extra)[1:]}"


def _insert_params(items: list[Prepared]) -> dict[str, Any]:
    return {"rows": f"[{','.join(map(_row_json, items))}]"}


def wire(kafka: KafkaSettings, record: NotificationRecord, value: bytes | None = None) -> tuple[str, bytes, bytes]:
    """A record's (topic, key, value) for the producer; ``value`` when it is encoded already."""
    return kafka.topic(record.channel), record.key(), value if value is not None else record.to_bytes()


async def publish_rows(publisher: Publisher, kafka: KafkaSettings, rows: list[dict[str, Any]]) -> None:
    """Publish the records of stored rows (the sweeper's and the scheduler's); Unavailable if Kafka refuses one."""
    await publisher.publish([wire(kafka, NotificationRecord.from_row(r)) for r in rows])


def _sender_not_allowed(address: str) -> ValidationFailed:
    message = f"{address} is not one of this site's senders (an admin sets them: PUT .../senders)"
    return ValidationFailed(
        "the notification is not valid", details=[{"field": "from", "code": "sender_not_allowed", "message": message}]
    )


async def store_files(pool: db.Pool, site_id: uuid.UUID, files: tuple[AttachmentSpec, ...]) -> list[dict[str, Any]]:
    """Store the inline ones (an uploaded one is stored already); their rows."""
    inline = [a for a in files if a.content is not None]
    if not inline:
        return []
    params = {
        "site_id": site_id,
        "ids": [a.attachment_id for a in inline],
        "filenames": [a.filename for a in inline],
        "content_types": [a.content_type for a in inline],
        "sizes": [len(a.content or b"") for a in inline],
        "sha256s": [hashlib.sha256(a.content or b"").hexdigest() for a in inline],
        "contents": [a.content for a in inline],
    }
    return await db.fetch_all(pool, "insert_attachments", params)


def _suppressed() -> ValidationFailed:
    message = (
        "the recipient is on this site's suppression list for the channel (a bounce, a spam report or an unsubscribe)"
    )
    return ValidationFailed(
        "the recipient is suppressed",
        code="recipient_suppressed",
        details=[{"field": "recipient", "code": "suppressed", "message": message}],
    )


def _too_far(horizon: timedelta) -> ValidationFailed:
    message = f"send_at must be at most {horizon.days} days ahead"
    return ValidationFailed(
        "the notification is not valid", details=[{"field": "send_at", "code": "too_far", "message": message}]
    )


async def publish_or_mark_failed(
    pool: db.Pool, publisher: Publisher, kafka: KafkaSettings, records: list[NotificationRecord]
) -> None:
    """Publish; the rows of records Kafka refuses are marked FAILED (enqueue_failed) so none stays PENDING,
    and the first refusal is raised."""
    if records:
        delivered = await publisher.enqueue([wire(kafka, r) for r in records])
        failed = await _confirm_or_mark_failed(pool, [uuid.UUID(r.message_id) for r in records], delivered)
        raise_delivery_errors(list(failed.values()))


async def _confirm_or_mark_failed(
    pool: db.Pool, ids: list[uuid.UUID], delivered: asyncio.Future[list[str | None]]
) -> dict[uuid.UUID, str]:
    """Wait for Kafka's answer to records already produced (``ids`` in their order); the rows of those it
    refused are marked as in ``publish_or_mark_failed``. Returns those ids, each with its own error."""
    started = time.perf_counter()
    failed = {message_id: error for message_id, error in zip(ids, await delivered, strict=True) if error is not None}
    if failed:
        await db.execute(pool, "mark_enqueue_failed", {"ids": list(failed), "errors": list(failed.values())})
        log.error("enqueue failed", extra={"count": len(failed), "error": next(iter(failed.values()))})
    ENQUEUE_SECONDS.observe(time.perf_counter() - started)
    return failed


def _retrieve_error(future: asyncio.Future[dict[uuid.UUID, str]]) -> None:
    if not future.cancelled():
        future.exception()


def _item_error(exc: NotifyError) -> dict[str, Any]:
    REJECTED.labels(exc.code).inc()
    return {"status": "rejected", "error": exc.to_body()["error"]}


@dataclass
class BulkItems:
    """A bulk request's items after validation: each one's result so far, and those ready to store by index."""

    results: list[dict[str, Any]]
    ready: dict[int, Prepared]

    def refuse_beyond(self, granted: int, error: NotifyError) -> None:
        """Keep the first ``granted`` ready items; the others are rejected with ``error``."""
        for index in list(self.ready)[granted:]:
            del self.ready[index]
            self.results[index] = {"index": index, **_item_error(error)}


class Acceptor:
    """Stores and enqueues notifications.

    Concurrent /send requests are gathered (group commit): the requests of one event-loop turn, and whatever
    arrived while the previous insert ran, go into PostgreSQL as one INSERT and to Kafka as one burst of
    records, and each request still gets its own answer. Few inserts at a time (``max_in_flight``, the API's
    ``API_INSERT_SLOTS``, 2): under load, batches grow instead of multiplying, so the cost per message falls as the
    rate rises. Two slots rather than one: with one, about half the batches at 70% load queued over 5 ms behind
    the insert before them (the code's own share of the tail); the second overlaps one insert's round trip with
    the next one's work, and the metrics rows they share are locked only from the trigger to the commit. Kafka's
    acknowledgement is awaited outside the slots. A bulk request is one such batch by itself.

    Sites share batches, never outcomes: a record Kafka refuses fails that message alone, a row the database
    refuses is found by splitting the statement, and no request gets another's error.
    """

    def __init__(
        self,
        pool: db.Pool,
        publisher: Publisher,
        kafka: KafkaSettings,
        *,
        max_in_flight: int = 2,
        schedule_horizon: timedelta = DEFAULT_SCHEDULE_HORIZON,
        attachment_limit: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.kafka = kafka
        self.schedule_horizon = schedule_horizon
        self.attachment_limit = attachment_limit
        self._batcher: Batcher[Prepared, _Stored] = Batcher(
            self._store_batch, max_in_flight=max_in_flight, on_flush=_observe_insert
        )

    def prepare(self, site: SiteIdentity, req: NotificationRequest) -> Prepared:
        """Give a valid request its id and record; refuse it (403, 413) if the site cannot send on its channel or
        the record would be larger than Kafka takes, or 422 if its send_at is beyond the horizon or its ``from`` is
        not one of the site's senders. Nothing is stored yet. An email goes out as the site's sender."""
        check_channel(site, req.channel)
        if req.transactional and not site.suppression_override:
            raise Forbidden(
                "transactional sends past the suppression list are not enabled for this site (an admin sets"
                " suppression_override)",
                code="override_not_allowed",
            )
        now = datetime.now(UTC)
        if req.send_at is not None and req.send_at - now > self.schedule_horizon:
            raise _too_far(self.schedule_horizon)
        sender = site.senders.resolve(req.content.sender)
        if req.content.sender is not None and sender is None:
            raise _sender_not_allowed(req.content.sender.email)
        message_id = uuid.uuid4()
        record = req.to_record(message_id, site.site_id, now.isoformat(), sender=sender)
        record_json = record.to_json()
        topic_key_value = wire(self.kafka, record, record_json.encode())
        room = self.publisher.room_for(*topic_key_value[1:])
        if room < 0:
            raise _too_large(req, room, self.publisher.max_record_bytes)
        return Prepared(message_id, req, record, record_json, topic_key_value, req.is_scheduled(now))

    async def resolve_attachments(self, site: SiteIdentity, req: NotificationRequest) -> NotificationRequest:
        """The request with its uploaded attachments checked (the site's own, 422 unknown_attachment otherwise)
        and named as uploaded where the send leaves it; 413 when all of them together are over the limit."""
        content = req.content
        uploaded = [a.attachment_id for a in content.attachments if a.uploaded]
        media_id = content.media.attachment_id if content.media is not None else None
        if not uploaded and media_id is None:
            return req
        params = {"site_id": site.site_id, "ids": [*uploaded, *([media_id] if media_id else [])]}
        rows = {r["id"]: r for r in await db.fetch_all(self.pool, "owned_attachments", params)}
        missing = [
            f"attachments[{i}]" for i, a in enumerate(content.attachments) if a.uploaded and a.attachment_id not in rows
        ]
        if media_id is not None and media_id not in rows:
            missing.append("media")
        if missing:
            problems = [
                {"field": f"{m}.attachment_id", "code": "unknown_attachment", "message": "no such attachment"}
                for m in missing
            ]
            raise ValidationFailed("the notification is not valid", details=problems)
        if content.media is not None and media_id is not None and content.media.filename is None:
            content = replace(content, media=replace(content.media, filename=rows[media_id]["filename"]))
        size = sum(
            len(a.content) if a.content is not None else rows[a.attachment_id]["size"] for a in content.attachments
        )
        if size > self.attachment_limit:
            raise attachments_too_large(size, self.attachment_limit)
        files = tuple(
            replace(
                a,
                filename=a.filename or rows[a.attachment_id]["filename"],
                content_type=a.content_type or rows[a.attachment_id]["content_type"],
            )
            if a.uploaded
            else a
            for a in content.attachments
        )
        return replace(req, content=replace(content, attachments=files))

    async def accept(self, site: SiteIdentity, item: Prepared) -> Accepted:
        if item.req.content.attachments:
            await store_files(self.pool, site.site_id, item.req.content.attachments)
        stored = await self._batcher.submit(item)
        if isinstance(stored, NotifyError):
            raise stored
        if stored is None:  # not inserted: the idempotency key was used before
            return await self._replay(site, item.req)
        failed = await asyncio.shield(stored)  # one client leaving does not cancel its batch-mates' confirmation
        if item.message_id in failed:
            raise delivery_error(failed[item.message_id])
        _ACCEPTED[item.req.channel].inc()
        if log.isEnabledFor(logging.DEBUG):  # the extra fields cost two UUID conversions per request
            log.debug("message accepted", extra={"message_id": str(item.message_id), "site_id": str(site.site_id)})
        return Accepted(item.message_id, replayed=False, status=item.status)

    async def _store_batch(self, items: list[Prepared]) -> list[_Stored]:
        """Insert and produce; each inserted item gets the batch's shared Kafka confirmation."""
        inserted, refused, produced, delivered = await self._insert_and_produce(items)
        confirmed = asyncio.ensure_future(_confirm_or_mark_failed(self.pool, produced, delivered))
        confirmed.add_done_callback(_retrieve_error)  # its waiters may all have gone
        return [refused.get(item.message_id) or (confirmed if item.message_id in inserted else None) for item in items]

    async def _insert_and_produce(
        self, items: list[Prepared]
    ) -> tuple[set[uuid.UUID], dict[uuid.UUID, NotifyError], list[uuid.UUID], asyncio.Future[list[str | None]]]:
        """Insert, then produce the records of the rows inserted that are due now (not: scheduled ones, idempotency
        key replays, rows the database refused). The ids inserted, the refused with their errors, the ids produced
        and the future of Kafka's answer for them."""
        inserted, refused = await self._insert(items)
        due = [item for item in items if item.message_id in inserted and not item.scheduled]
        delivered = await self.publisher.enqueue([i.wire for i in due])
        return inserted, refused, [i.message_id for i in due], delivered

    async def _insert(self, items: list[Prepared]) -> tuple[set[uuid.UUID], dict[uuid.UUID, NotifyError]]:
        """One statement for all; if the database refuses a row (validation lets nothing such through, so this
        is a safety net), halves are retried until the row is alone, and it fails by itself."""
        try:
            rows = await db.fetch_all(self.pool, "insert_messages", _insert_params(items))
            return {r["id"] for r in rows if not r["suppressed"]}, {
                r["id"]: _suppressed() for r in rows if r["suppressed"]
            }
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            if len(items) == 1:
                log.error(
                    "message refused by the database",
                    extra={"message_id": str(items[0].message_id), "sqlstate": exc.sqlstate},
                )
                refusal = ValidationFailed(
                    "the database cannot store this message",
                    code="unstorable_message",
                    details=[{"field": "", "code": "unstorable", "message": f"SQLSTATE {exc.sqlstate}"}],
                )
                return set(), {items[0].message_id: refusal}
        middle = len(items) // 2
        first_ids, first_refused = await self._insert(items[:middle])
        second_ids, second_refused = await self._insert(items[middle:])
        return first_ids | second_ids, {**first_refused, **second_refused}

    async def _replay(self, site: SiteIdentity, req: NotificationRequest) -> Accepted:
        """The idempotency key was used before: the same request gets the same message, another is a conflict.

        A message whose enqueue failed (the client saw a 503) is enqueued again under its id.
        """
        assert req.idempotency_key is not None
        existing = await db.fetch_one(
            self.pool,
            "messages_by_idempotency_keys",
            {"site_id": site.site_id, "idempotency_keys": [req.idempotency_key]},
        )
        if existing is None:  # the first request's row is gone (deleted): a transient conflict
            raise Conflict("the idempotency key is being used by another request; retry", code="idempotency_key_in_use")
        if existing["idempotency_fingerprint"] != req.fingerprint():
            raise Conflict(
                "this idempotency key was already used with a different request", code="idempotency_key_conflict"
            )
        reopened = None
        if existing["failure_code"] == "enqueue_failed":
            reopened = await db.fetch_one(self.pool, "reopen_enqueue_failed", {"id": existing["id"]})
        if reopened is None:
            waiting = (
                MessageStatus.SCHEDULED if existing["status"] == MessageStatus.SCHEDULED else MessageStatus.PENDING
            )
            return Accepted(existing["id"], replayed=True, status=waiting)
        record = req.to_record(
            existing["id"], site.site_id, datetime.now(UTC).isoformat(), sender=site.senders.resolve(req.content.sender)
        )
        await publish_or_mark_failed(self.pool, self.publisher, self.kafka, [record])
        _ACCEPTED[req.channel].inc()
        return Accepted(existing["id"], replayed=False)

    async def prepare_bulk(self, site: SiteIdentity, items: Any) -> BulkItems:
        """Validate and prepare each item on its own; nothing is stored yet. The loop is given back every
        ``BULK_ITEMS_PER_TURN`` items: a maximal bulk is ~0.1 s of work, and other sites' requests go between."""
        if not isinstance(items, list) or not items:
            raise ValidationFailed(
                "items must be a non-empty list",
                details=[{"field": "items", "code": "wrong_type", "message": "expected a list"}],
            )
        if len(items) > MAX_BULK_ITEMS:
            raise ValidationFailed(
                f"at most {MAX_BULK_ITEMS} items per request",
                details=[{"field": "items", "code": "too_many", "message": f"{len(items)} items"}],
            )
        bulk = BulkItems([{} for _ in items], {})
        seen_keys: set[str] = set()
        for index, raw in enumerate(items):
            if index and not index % BULK_ITEMS_PER_TURN:
                await asyncio.sleep(0)
            try:
                req = await self.resolve_attachments(
                    site, parse_notification(raw, attachment_limit=self.attachment_limit)
                )
                if req.idempotency_key is not None:
                    if req.idempotency_key in seen_keys:
                        raise Conflict("idempotency_key repeated within this request", code="duplicate_idempotency_key")
                    seen_keys.add(req.idempotency_key)
                bulk.ready[index] = self.prepare(site, req)
            except NotifyError as exc:
                bulk.results[index] = {"index": index, **_item_error(exc)}
        return bulk

    async def accept_bulk(self, site: SiteIdentity, bulk: BulkItems) -> list[dict[str, Any]]:
        """Store the ready items as one batch; each item's result (accepted, replayed or rejected)."""
        results = bulk.results
        ready = list(bulk.ready.values())
        inline = tuple(a for item in ready for a in item.req.content.attachments)
        if inline:
            await store_files(self.pool, site.site_id, inline)
        inserted, refused, produced, delivered = (
            await self._insert_and_produce(ready) if ready else (set(), {}, [], None)
        )
        failed = await _confirm_or_mark_failed(self.pool, produced, delivered) if delivered is not None else {}
        if failed and len(failed) == len(ready):  # Kafka took none of them: the request as a whole is a 503
            raise_delivery_errors(list(failed.values()))
        for index, item in bulk.ready.items():
            if item.message_id in refused or item.message_id in failed:
                error = refused.get(item.message_id) or delivery_error(failed[item.message_id])
                results[index] = {"index": index, "message_id": str(item.message_id), **_item_error(error)}
                continue
            if item.message_id in inserted:
                _ACCEPTED[item.req.channel].inc()
                results[index] = {"index": index, "status": "accepted", "message_id": str(item.message_id)}
                if item.scheduled:
                    results[index]["scheduled"] = True
                continue
            try:
                replay = await self._replay(site, item.req)
            except Conflict as exc:
                results[index] = {"index": index, **_item_error(exc)}
                continue
            results[index] = {
                "index": index,
                "status": "accepted",
                "message_id": str(replay.message_id),
                "replayed": replay.replayed,
            }
        log.info("bulk accepted", extra={"site_id": str(site.site_id), "count": len(inserted), "items": len(results)})
        return results
