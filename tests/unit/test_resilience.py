"""Pure pieces of delivery: retry delays, the circuit breaker, offset tracking, provider error mapping."""

from __future__ import annotations

import httpx
import pytest

from lib.adapters.providers import error_for_response, error_for_transport, parse_retry_after
from lib.common.ratelimit import TokenBucket
from lib.common.resilience import CircuitBreaker, CircuitState, RetryPolicy
from lib.delivery.offsets import OffsetTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_retries=3, base_delay_s=1.0, jitter=0.2)
    assert [policy.delay_s(n, rand=lambda: 0.0) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert [policy.delay_s(n, rand=lambda: 1.0) for n in (1, 2, 3)] == pytest.approx([1.2, 2.4, 4.8])
    assert policy.delay_s(1, retry_after_s=7, rand=lambda: 0.0) == 7.0  # Retry-After wins when longer
    assert policy.delay_s(3, retry_after_s=0.5, rand=lambda: 0.0) == 4.0
    assert [policy.should_retry(n) for n in range(5)] == [True, True, True, False, False]


def test_circuit_opens_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, open_s=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED and breaker.acquire() == 0.0
    breaker.record_failure()
    state: CircuitState = breaker.state
    assert state is CircuitState.OPEN and breaker.acquire() == pytest.approx(10.0)
    clock.now += 10
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.acquire() == 0.0  # the one probe
    assert breaker.acquire() > 0  # everyone else still waits
    breaker.record_failure()  # the probe failed: open for twice as long
    clock.now += 10
    assert breaker.state is CircuitState.OPEN
    clock.now += 10
    assert breaker.acquire() == 0.0
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.acquire() == 0.0


def test_a_probe_that_never_reports_is_replaced_after_its_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_s=10, clock=clock, probe_timeout_s=30)
    breaker.record_failure()
    clock.now += 10
    assert breaker.acquire() == 0.0 and breaker.probe_out  # the probe goes, and is never heard of again
    clock.now += 29
    assert breaker.acquire() > 0  # still its turn
    clock.now += 1
    assert not breaker.probe_out and breaker.acquire() == 0.0  # a new probe
    breaker.abandon_probe()
    assert breaker.acquire() == 0.0  # handed back: the next caller probes at once
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED


def test_offsets_commit_only_below_the_oldest_unfinished() -> None:
    tracker = OffsetTracker()
    tp = ("t", 0)
    for offset in (5, 6, 7, 8):
        tracker.started(tp, offset)
    assert tracker.committable() == {tp: 5}
    tracker.finished(tp, 6)
    tracker.finished(tp, 8)
    assert tracker.committable() == {tp: 5}  # 5 is still in flight
    tracker.finished(tp, 5)
    assert tracker.committable() == {tp: 7}
    tracker.committed({tp: 7})
    assert tracker.committable() == {}
    tracker.finished(tp, 7)
    assert tracker.committable() == {tp: 9}
    tracker.forget({tp})
    assert tracker.committable() == {}


def test_token_bucket_spaces_requests() -> None:
    clock = Clock()
    bucket = TokenBucket(2.0, burst=1, clock=clock)
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.try_take() == pytest.approx(0.5)


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://provider"))


def test_provider_errors_are_classified() -> None:
    limited = error_for_response("p", response(429, **{"Retry-After": "3"}), "slow down")
    assert (limited.temporary, limited.code, limited.retry_after_s) == (True, "provider_rate_limited", 3.0)
    assert error_for_response("p", response(503), "x").temporary
    assert error_for_response("p", response(408), "x").temporary
    for status, code in (
        (400, "provider_rejected"),
        (401, "provider_auth_failed"),
        (403, "provider_forbidden"),
        (413, "provider_payload_too_large"),
        (422, "invalid_recipient"),
    ):
        error = error_for_response("p", response(status), "x")
        assert (error.temporary, error.code) == (False, code)
    timeout = error_for_transport("p", httpx.ReadTimeout("slow"))
    assert timeout.temporary and timeout.unanswered and "timed out" in timeout.message
    for never_sent in (httpx.ConnectError("refused"), httpx.ConnectTimeout("syn"), httpx.PoolTimeout("full")):
        assert not error_for_transport("p", never_sent).unanswered
    assert error_for_transport("p", httpx.RemoteProtocolError("closed after the request")).unanswered
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and parse_retry_after(None) is None


def test_a_record_survives_the_wire() -> None:
    from lib.domain.notification import Content, NotificationRecord

    record = NotificationRecord(
        "8d7e6f1a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
        "s",
        "email",
        Content("a@example.com", "body", "subject", "<p>html</p>", {"doc": "SINV-1"}),
        "2026-11-24T00:00:00+00:00",
    )
    assert NotificationRecord.from_bytes(record.to_bytes()) == record
    with pytest.raises(ValueError):
        NotificationRecord.from_bytes(b'{"v": 99}')


def test_a_429_holds_every_caller_without_opening_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, open_s=10, clock=clock)
    breaker.hold(3.0)
    assert breaker.acquire() == pytest.approx(3.0) and breaker.state is CircuitState.CLOSED
    clock.now += 3.0
    assert breaker.acquire() == 0.0
