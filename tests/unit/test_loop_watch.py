"""The API's event-loop watcher counts a stall as long as the step that caused it."""

from __future__ import annotations

import asyncio
import time

from lib.adapters.http import LOOP_STALLS, watch_event_loop


def _count_and_sum() -> tuple[float, float]:
    samples = {s.name: s.value for metric in LOOP_STALLS.collect() for s in metric.samples}
    return samples["notify_event_loop_stall_seconds_count"], samples["notify_event_loop_stall_seconds_sum"]


def test_a_blocking_step_is_counted_as_a_stall() -> None:
    async def scenario() -> None:
        watcher = asyncio.create_task(watch_event_loop(0.005))
        await asyncio.sleep(0.05)  # the watcher is running; quiet turns count nothing
        time.sleep(0.12)  # a synchronous step holding the loop
        await asyncio.sleep(0.05)
        watcher.cancel()

    count, total = _count_and_sum()
    asyncio.run(scenario())
    after_count, after_total = _count_and_sum()
    assert after_count - count >= 1
    assert 0.1 <= after_total - total <= 0.5
