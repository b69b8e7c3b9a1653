"""Kafka adapters: an asyncio-friendly producer that reports delivery, and topic creation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lib.errors import Unavailable
from lib.settings import KafkaSettings

log = logging.getLogger(__name__)
CHANNELS = ("email", "whatsapp")


def producer_config(settings: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        **settings.client_config(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 1,
        "socket.nagle.disable": True,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        # A request waits at most this long for the broker before the client gets a 503.
        "message.timeout.ms": 10_000,
    }
    config.update(overrides)
    return config


class _Batch:
    """Counts down the delivery reports of one publish call and wakes its waiter once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.remaining = count
        self.errors: list[str] = []
        self.future: asyncio.Future[list[str]] = loop.create_future()
        self.lock = threading.Lock()

    def on_delivery(self, err: KafkaError | None, _msg: Any) -> None:
        with self.lock:
            if err is not None:
                self.errors.append(str(err))
            self.remaining -= 1
            done = self.remaining == 0
        if done:
            self.loop.call_soon_threadsafe(_resolve, self.future, self.errors)


def _resolve(future: asyncio.Future[list[str]], errors: list[str]) -> None:
    if not future.done():
        future.set_result(errors)


class Publisher:
    """Produces records and lets a coroutine await the broker's acknowledgement of all of them.

    A daemon thread serves librdkafka's delivery callbacks, so the event loop never blocks on poll().
    """

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        self._producer = Producer(producer_config(settings, **overrides))
        self._running = True
        self._thread = threading.Thread(target=self._serve_callbacks, name="kafka-delivery", daemon=True)
        self._thread.start()
        self._ready_at = 0.0

    def _serve_callbacks(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    async def publish(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Produce ``(topic, key, value)`` records; return once all are acknowledged, else raise Unavailable."""
        if not records:
            return
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for topic, key, value in records:
            while True:
                try:
                    self._producer.produce(topic, value, key, on_delivery=batch.on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain, then go on
                    await asyncio.sleep(0.005)
                except KafkaException as exc:
                    batch.on_delivery(exc.args[0], None)
                    break
        errors = await batch.future
        if errors:
            raise Unavailable(f"Kafka did not accept the message: {errors[0]}", code="kafka_unavailable")

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
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("kafka producer closed with %d undelivered records", remaining)
        self._running = False
        self._thread.join(timeout=1.0)


def ensure_topics(
    settings: KafkaSettings, *, partitions: int, replication: int = 1, timeout_s: float = 30.0
) -> list[str]:
    """Create each channel's topic and dead-letter topic if missing; return those created."""
    admin = AdminClient(settings.client_config())
    wanted = [settings.topic(c) for c in CHANNELS] + [settings.dlq_topic(c) for c in CHANNELS]
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
