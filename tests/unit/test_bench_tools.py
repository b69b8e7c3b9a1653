"""The benchmark's load figures: the warm-up is left out of every figure, and only there."""

from __future__ import annotations

import json

from bench.neighbours import BULK_ITEMS, _bulk_body, _lookup_id, _made_up_keys, _oversized_body, _wrong_secret_keys
from bench.tools import _Sample, _summary
from lib.domain.keys import parse_key
from lib.domain.validation import LIMITS

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


def test_the_maximal_bulk_body_fits_just_under_the_limit() -> None:
    limit = 16 * 1024 * 1024
    body = _bulk_body(limit)
    items = json.loads(body)["items"]
    assert limit - BULK_ITEMS < len(body) <= limit  # equal bodies: at most one byte per item short
    assert len(items) == BULK_ITEMS
    assert all(item["channel"] == "email" and item["subject"] and item["body"] == items[0]["body"] for item in items)
    assert 16_000 < len(items[0]["body"]) <= LIMITS["email_body"]


def test_the_oversized_record_is_500_kb_of_utf8_and_still_valid() -> None:
    body = _oversized_body()
    assert 500_000 < len(body) < 1024 * 1024  # under the API's max_body_bytes: refused by no size check
    item = json.loads(body)
    assert item["channel"] == "email" and item["subject"]
    assert item["body"] == "é" * 250_000 and len(item["body"]) <= LIMITS["email_body"]


def test_flood_keys_have_the_key_shape_and_are_distinct() -> None:
    real = "nfy_0123456789abcdef_" + "a_b" * 14 + "c"
    wrong = _wrong_secret_keys(_lookup_id(real), 50)
    made_up = _made_up_keys(50)
    assert {parse_key(k).lookup_id for k in wrong} == {"0123456789abcdef"}
    assert len({parse_key(k).lookup_id for k in made_up}) == 50
    assert len(set(wrong + made_up + [real])) == 101
