"""Group commit: which callers share a batch, how many batches run at once, and who hears of a failure."""

from __future__ import annotations

import asyncio

import pytest

from lib.common.batching import Batcher


def test_callers_of_one_loop_turn_share_one_batch() -> None:
    """Ten requests woken in the same turn: one batch, not a batch of one for each free slot."""
    batches: list[list[int]] = []

    async def flush(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0)
        return [i * 10 for i in items]

    async def run() -> list[int]:
        batcher: Batcher[int, int] = Batcher(flush, max_in_flight=2)
        return await asyncio.gather(*(batcher.submit(i) for i in range(10)))

    assert asyncio.run(run()) == [i * 10 for i in range(10)]
    assert batches == [list(range(10))]


def test_callers_arriving_while_the_slots_are_busy_go_out_together() -> None:
    batches: list[list[int]] = []
    running = 0
    most_running = 0

    async def run() -> list[int]:
        release = asyncio.Event()

        async def flush(items: list[int]) -> list[int]:
            nonlocal running, most_running
            batches.append(items)
            running += 1
            most_running = max(most_running, running)
            await release.wait()
            running -= 1
            return items

        batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1, max_batch=3)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.01)
        later = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0.01)
        assert batches == [[0]]  # the others wait for the slot
        release.set()
        return await asyncio.gather(first, *later)

    assert asyncio.run(run()) == list(range(6))
    assert batches == [[0], [1, 2, 3], [4, 5]]  # at most max_batch items, in arrival order
    assert most_running == 1


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    async def flush(items: list[int]) -> list[int]:
        if 0 in items:
            raise RuntimeError("insert failed")
        return items

    async def run() -> tuple[list[BaseException | int], int]:
        batcher: Batcher[int, int] = Batcher(flush, max_in_flight=1)
        failed = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        return failed, await batcher.submit(7)

    failed, after = asyncio.run(run())
    assert [str(f) for f in failed] == ["insert failed"] * 3
    assert after == 7


@pytest.mark.parametrize("in_flight", [1, 2])
def test_no_more_batches_run_at_once_than_allowed(in_flight: int) -> None:
    running = 0
    most_running = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal running, most_running
        running += 1
        most_running = max(most_running, running)
        await asyncio.sleep(0.005)
        running -= 1
        return items

    async def run() -> None:
        batcher: Batcher[int, int] = Batcher(flush, max_in_flight=in_flight, max_batch=2)
        assert await asyncio.gather(*(batcher.submit(i) for i in range(20))) == list(range(20))

    asyncio.run(run())
    assert most_running == in_flight


def test_each_batch_reports_its_size_its_queueing_and_its_hold() -> None:
    """With one slot and a 20 ms flush, the second batch's items wait for the first: the wait is told apart from
    the hold (how the accept path's tail is split between queueing and the insert itself)."""
    told: list[tuple[int, float, float]] = []

    async def flush(items: list[int]) -> list[int]:
        await asyncio.sleep(0.02)
        return items

    async def run() -> None:
        batcher: Batcher[int, int] = Batcher(
            flush, max_in_flight=1, max_batch=3, on_flush=lambda *report: told.append(report)
        )
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))

    asyncio.run(run())
    assert [size for size, _, _ in told] == [3, 2]
    (_, first_queued, first_held), (_, second_queued, _) = told
    assert first_queued < 0.01 <= 0.015 <= first_held
    assert second_queued >= 0.015  # it waited out the first batch's hold
