"""The API's event-loop watcher counts a stall as long as the step that caused it, as the loop's own work."""

from __future__ import annotations

import asyncio
import time

from lib.adapters.http import LOOP_STALLS, STALLED, watch_event_loop


def _count_sum_running() -> tuple[float, float, float]:
    samples = {s.name: s.value for metric in LOOP_STALLS.collect() for s in metric.samples}
    running = sum(s.value for m in STALLED.collect() for s in m.samples if s.labels.get("part") == "running")
    total = samples["notify_event_loop_stall_seconds_sum"]
    return samples["notify_event_loop_stall_seconds_count"], total, running


def test_a_blocking_step_is_counted_as_a_stall() -> None:
    async def scenario() -> None:
        watcher = asyncio.create_task(watch_event_loop(0.005))
        await asyncio.sleep(0.05)  # the watcher is running; quiet turns count nothing
        until = time.perf_counter() + 0.12
        while time.perf_counter() < until:  # a synchronous step holding the loop, on the CPU
            pass
        await asyncio.sleep(0.05)
        watcher.cancel()

    count, total, running = _count_sum_running()
    asyncio.run(scenario())
    after_count, after_total, after_running = _count_sum_running()
    assert after_count - count >= 1
    assert 0.1 <= after_total - total <= 0.5
    assert after_running - running >= 0.08  # the loop thread was running: the code's stall, not the machine's
