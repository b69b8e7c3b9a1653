"""The benchmark's load figures: the warm-up is left out of every figure, and only there."""

from __future__ import annotations

from bench.tools import _Sample, _summary

MS = 1_000_000  # nanoseconds


def _run() -> list[_Sample]:
    """Two seconds at 100 requests/s: the first second slow (fresh connections), the second fast, one 503
    and one request with no answer at all in the second."""
    samples = [_Sample(i * 10 * MS, "202", 80 * MS, "") for i in range(100)]
    samples += [_Sample(1000 * MS + i * 10 * MS, "202", 2 * MS, "") for i in range(98)]
    samples.append(_Sample(1980 * MS, "503", 3 * MS, "503 Service Unavailable"))
    samples.append(_Sample(1990 * MS, "0", 10 * MS, "read: connection reset by peer"))
    return samples


def test_the_warm_up_second_is_not_counted() -> None:
    result = _summary(_run(), warmup_s=1.0)
    assert result.requests == 100
    assert result.p50_ms == 2.0
    assert result.p99_ms == 10.0  # the slowest counted request: the reset one
    assert result.status_codes == {"202": 98, "503": 1, "0": 1}
    assert result.non_2xx == 2
    assert result.success == 0.98


def test_the_whole_run_p99_is_kept_beside_it() -> None:
    assert _summary(_run(), warmup_s=1.0).p99_with_warmup_ms == 80.0


def test_throughput_is_over_the_counted_window() -> None:
    """98 answers between 1.000 s (first counted send) and 2.000 s (last answer): 98/s, not 198 over 2 s."""
    result = _summary(_run(), warmup_s=1.0)
    assert abs(result.throughput - 98.0) < 0.01


def test_only_transport_errors_are_listed_as_errors() -> None:
    assert _summary(_run(), warmup_s=1.0).errors == ("read: connection reset by peer",)


def test_no_warm_up_counts_everything() -> None:
    result = _summary(_run(), warmup_s=0)
    assert result.requests == 200
    assert result.p99_ms == result.p99_with_warmup_ms == 80.0
