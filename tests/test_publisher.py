"""The Kafka publisher against the real broker: delivery reports served on the event loop's own thread."""

from __future__ import annotations

import asyncio
import threading

from lib.adapters.kafka import Publisher
from lib.common.settings import KafkaSettings


def test_reports_are_served_by_the_loop_without_a_thread_of_their_own(kafka_settings: KafkaSettings) -> None:
    threads_before = {t.ident for t in threading.enumerate()}

    async def run() -> tuple[set[int | None], set[int | None]]:
        publisher = Publisher(kafka_settings)
        records = [(kafka_settings.topic("email"), f"k{i}".encode(), b"{}") for i in range(20)]
        served_on: set[int | None] = set()
        delivered = await publisher.enqueue(records)
        delivered.add_done_callback(lambda _f: served_on.add(threading.get_ident()))
        assert await asyncio.wait_for(delivered, 20) == [None] * 20
        python_threads = {t.ident for t in threading.enumerate()}
        await asyncio.to_thread(publisher.close)
        return served_on, python_threads

    served_on, python_threads = asyncio.run(run(), debug=True)
    assert served_on == {threading.get_ident()}
    assert python_threads == threads_before  # no polling thread (librdkafka's own threads are not Python's)


def test_reports_served_by_close_in_another_thread_still_wake_the_loop(kafka_settings: KafkaSettings) -> None:
    """close() flushes in a worker thread; a report it serves must reach the loop thread-safely (in debug mode
    asyncio raises on a loop call from the wrong thread, and the flush re-raises it)."""
    close_errors: list[BaseException] = []

    def close(publisher: Publisher) -> None:
        try:
            publisher.close()
        except BaseException as exc:
            close_errors.append(exc)

    async def run() -> list[str | None]:
        publisher = Publisher(kafka_settings)
        delivered = await publisher.enqueue([(kafka_settings.topic("email"), b"k", b"{}")])
        waiter = asyncio.shield(delivered)  # someone awaits it, so resolving it schedules a callback on the loop
        # Block the loop so its poll timer cannot serve the report: close() in another thread must.
        closer = threading.Thread(target=close, args=(publisher,))
        closer.start()
        closer.join()
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(run(), debug=True) == [None]
    assert close_errors == []
