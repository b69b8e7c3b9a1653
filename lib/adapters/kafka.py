"""Kafka adapters: an asyncio-friendly producer that reports delivery, and topic creation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from lib.common.settings import KafkaSettings
from lib.domain.errors import Unavailable
from lib.domain.vocabulary import CHANNELS

log = logging.getLogger(__name__)
# librdkafka refuses a record whose key + value + framing exceed the producer's message.max.bytes (default
# 1,000,000); the broker refuses a batch over the topic's max.message.bytes. Records are checked against the
# smaller, less this margin for the framing, before anything is stored.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
RECORD_FRAMING_BYTES = 512


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **settings.client_config(),
        "acks": "all",
        "enable.idempotence": True,
        # A 202 waits for the broker's acknowledgement, so a linger is paid by every request; the batching comes
        # from the group commit (one produce burst per insert) and from librdkafka's queue while requests are in
        # flight. At 5,300/s the acknowledgement's median fell from 4.1 to 2.8 ms against linger.ms=1.
        "linger.ms": 0,
        "socket.nagle.disable": True,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        # A request waits at most this long for the broker before the client gets a 503.
        "message.timeout.ms": 10_000,
    }
    config.update(overrides)
    return config


class _Batch:
    """Collects the delivery reports of one publish call, each in its record's place, and wakes its waiter once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.remaining = count
        # One slot per record: None while acknowledged, else the broker's error for that record alone.
        self.errors: list[str | None] = [None] * count
        self.future: asyncio.Future[list[str | None]] = loop.create_future()

    def on_delivery(self, index: int, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors[index] = str(err)
        self.remaining -= 1
        if self.remaining:
            return
        if threading.get_ident() == self.loop_thread:
            _resolve(self.future, self.errors)
        else:  # served by close()'s flush in another thread
            self.loop.call_soon_threadsafe(_resolve, self.future, self.errors)


def _resolve(future: asyncio.Future[list[str | None]], errors: list[str | None]) -> None:
    if not future.done():
        future.set_result(errors)


def delivery_error(error: str) -> Unavailable:
    """What a client is told of its record's refusal (its own record's error, never another's)."""
    return Unavailable(f"Kafka did not accept the message: {error}", code="kafka_unavailable")


def raise_delivery_errors(errors: list[str | None]) -> None:
    """For a publish that stands or falls as a whole: the first record's error, if any."""
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise delivery_error(first)


class Publisher:
    """Produces records and lets a coroutine await the broker's acknowledgement of all of them.

    Delivery reports are served on the event loop's own thread: while any record awaits its report, a timer
    polls the producer every millisecond (``poll(0)`` never blocks). A background polling thread, the usual
    pattern, needs the GIL for every round of reports and then wakes the loop through its self-pipe: under
    load it waited milliseconds for the GIL each time, and every request waited with it.
    """

    POLL_INTERVAL_S = 0.001

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        config = producer_config(settings, **overrides)
        self._producer = Producer(config)
        self.max_record_bytes = int(config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._poll_timer: asyncio.TimerHandle | None = None
        self._poll_loop: asyncio.AbstractEventLoop | None = None
        self._ready_at = 0.0

    def _poll(self) -> None:
        self._poll_timer = None
        self._producer.poll(0)
        self._keep_polling(asyncio.get_running_loop())

    def _keep_polling(self, loop: asyncio.AbstractEventLoop) -> None:
        # len(): records not yet acknowledged plus reports not yet served. A timer left on another (closed)
        # loop does not count: one publisher may outlive an asyncio.run().
        if (self._poll_timer is None or self._poll_loop is not loop) and len(self._producer):
            self._poll_timer = loop.call_later(self.POLL_INTERVAL_S, self._poll)
            self._poll_loop = loop

    async def enqueue(self, records: Sequence[tuple[str, bytes, bytes]]) -> asyncio.Future[list[str | None]]:
        """Produce ``(topic, key, value)`` records now; the future resolves, once the broker has answered for
        every one of them, with one entry per record: None when acknowledged, else that record's own error (one
        refused record fails nothing else). Waits only while librdkafka's local queue is full."""
        loop = asyncio.get_running_loop()
        batch = _Batch(loop, len(records))
        if not records:
            batch.future.set_result([])
        for index, (topic, key, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(topic, value, key, on_delivery=partial(batch.on_delivery, index))
                    break
                except BufferError:  # local queue full: let deliveries drain, then go on
                    self._keep_polling(loop)
                    await asyncio.sleep(0.005)
                except KafkaException as exc:  # refused locally (too large, unknown topic): this record only
                    batch.on_delivery(index, exc.args[0], None)
                    break
        self._keep_polling(loop)
        return batch.future

    def room_for(self, key: bytes, value: bytes) -> int:
        """Bytes to spare for a record (negative: it is too large and would be refused)."""
        return self.max_record_bytes - RECORD_FRAMING_BYTES - len(key) - len(value)

    async def publish(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Produce records and return once all are acknowledged, else raise Unavailable."""
        raise_delivery_errors(await (await self.enqueue(records)))

    async def check_ready(self, timeout_s: float = 2.0, cache_s: float = 2.0) -> None:
        """Raise Unavailable unless the cluster answered a metadata request recently."""
        if time.monotonic() - self._ready_at < cache_s:
            return
        try:
            await asyncio.to_thread(self._producer.list_topics, timeout=timeout_s)
        except KafkaException as exc:
            raise Unavailable("Kafka is unreachable", code="kafka_unavailable") from exc
        self._ready_at = time.monotonic()

    def close(self, timeout_s: float = 10.0) -> None:
        # Called from a thread (flush blocks): a pending poll timer is left to the loop, it finds nothing to do.
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("kafka producer closed with %d undelivered records", remaining)


def _channel_topics(settings: KafkaSettings) -> list[str]:
    return [settings.topic(c) for c in CHANNELS] + [settings.dlq_topic(c) for c in CHANNELS]


def sized_for_topics(topic_max_bytes: int | None) -> dict[str, int]:
    """Producer settings that keep records *and batches* under the topics' max.message.bytes: the broker refuses
    a batch over it whole, so a batch of many sites' records must never grow past it either."""
    if topic_max_bytes is None or topic_max_bytes >= DEFAULT_MESSAGE_MAX_BYTES:
        return {}
    return {"message.max.bytes": topic_max_bytes, "batch.size": topic_max_bytes - RECORD_FRAMING_BYTES}


def topic_max_message_bytes(settings: KafkaSettings, *, timeout_s: float = 5.0) -> int | None:
    """The smallest max.message.bytes of the channel topics, as the broker reports it (None: none answered)."""
    admin = AdminClient(settings.client_config())
    resources = [ConfigResource(ResourceType.TOPIC, settings.topic(c)) for c in CHANNELS]
    limits = []
    for future in admin.describe_configs(resources, request_timeout=timeout_s).values():
        entry = future.result(timeout=timeout_s).get("max.message.bytes")
        if entry is not None and entry.value:
            limits.append(int(entry.value))
    return min(limits) if limits else None


def ensure_topics(
    settings: KafkaSettings, *, partitions: int, replication: int = 1, timeout_s: float = 30.0
) -> list[str]:
    """Create each channel's topic and dead-letter topic if missing; return those created."""
    admin = AdminClient(settings.client_config())
    wanted = _channel_topics(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [
        NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in wanted if t not in existing
    ]
    created = []
    for topic, future in admin.create_topics(missing, operation_timeout=timeout_s).items() if missing else []:
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


def drop_topics(settings: KafkaSettings, *, timeout_s: float = 30.0) -> None:
    """Delete each channel's topic and dead-letter topic (a test's or benchmark's own, under its prefix):
    partitions left behind stay on the broker for good, and every one costs it work."""
    admin = AdminClient(settings.client_config())
    for future in admin.delete_topics(_channel_topics(settings), operation_timeout=timeout_s).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
