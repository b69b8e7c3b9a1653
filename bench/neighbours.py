"""The noisy-neighbour benchmark: site B's steady traffic alone, then beside each abuse by site A, all in one run.

One API process (as in bench/api.py). B sends small emails at a steady open-loop rate R, half of /send's
closed-loop maximum measured first, so that B alone is not saturated on this 2-core machine. Then, one phase
each, the same B load while A floods the API: oversized records, wrong secrets on A's own lookup id, made-up
keys (more than the key cache holds), maximal bulk bodies. Each phase's B figures stand beside B alone.

The two sites come from distinct client addresses (``X-Forwarded-For``, believed from 127.0.0.1 only:
``API_TRUSTED_PROXIES``); the addresses are documentation ones and only header values.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from bench.api import BODY, EMAIL, WORKERS, _api_env, _register, _send_targets, _server
from bench.common import Report, fresh_database, fresh_topics, verdict
from bench.tools import AttackResult, Target, attack
from functions.api.settings import ApiSettings

B_CLIENT = {"X-Forwarded-For": "198.51.100.20"}  # TEST-NET-2
A_CLIENT = {"X-Forwarded-For": "203.0.113.10"}  # TEST-NET-3
CAPACITY_CONNECTIONS = 128
STEADY_SHARE = 0.5  # B's rate: this share of /send's closed-loop maximum
SETTLE_S = 2.0
OVERSIZED_CHARS = 250_000  # of "é": 500 KB of UTF-8, under the email body limit (256 Ki characters)
WRONG_SECRET_RATE = 500
MADE_UP_KEYS = 11_000  # more than the authenticator's 10,000 cache entries
MADE_UP_RATE = 2000
BULK_ITEMS = 1000
# Waiting out A's throttle before the bulk phase (the wrong-secret phase may have earned it one): at most this.
MAX_THROTTLE_WAIT_S = 75.0


@dataclass(frozen=True)
class Abuse:
    name: str
    targets: list[Target]
    rate: float  # 0: as fast as ``workers`` loops go
    workers: int
    timeout_s: float = 10.0
    # A's own valid key: if A is still throttled from the wrong-secret phase, wait until it is served again
    wait_for_a: bool = False


def _lookup_id(key: str) -> str:
    """The public part of ``nfy_<lookup id>_<secret>`` (the secret may contain ``_`` itself)."""
    return key.split("_")[1]


def _wrong_secret_keys(lookup_id: str, count: int) -> list[str]:
    return [f"nfy_{lookup_id}_{secrets.token_urlsafe(32)}" for _ in range(count)]


def _made_up_keys(count: int) -> list[str]:
    return [f"nfy_{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}" for _ in range(count)]


def _oversized_body() -> bytes:
    """A valid email whose body is 250,000 "é": about 500 KB encoded (as UTF-8, not as \\u escapes)."""
    return json.dumps({**EMAIL, "body": "é" * OVERSIZED_CHARS}, ensure_ascii=False).encode()


def _bulk_body(max_bytes: int, items: int = BULK_ITEMS) -> bytes:
    """``items`` valid emails whose encoded /bulk body is as close under ``max_bytes`` as equal bodies allow."""
    overhead = len(json.dumps({"items": [{**EMAIL, "body": ""}] * items}).encode())
    each = (max_bytes - overhead) // items
    text = (BODY * (each // len(BODY) + 1))[:each]
    return json.dumps({"items": [{**EMAIL, "body": text}] * items}).encode()


def _targets(url: str, endpoint: str, body: bytes, keys: list[str], client: dict[str, str]) -> list[Target]:
    headers = {"Content-Type": "application/json", **client}
    return [Target("POST", f"{url}/api/v1/notifications/{endpoint}", body, {**headers, "X-Site-Key": k}) for k in keys]


def _wait_until_accepted(url: str, key: str) -> float:
    """Seconds spent waiting while ``key`` is refused with 429 (its Retry-After each time), at most the bound."""
    started = time.monotonic()
    while True:
        response = httpx.post(
            f"{url}/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key, **A_CLIENT}, timeout=30
        )
        waited = time.monotonic() - started
        if response.status_code != 429 or waited >= MAX_THROTTLE_WAIT_S:
            return waited
        time.sleep(min(float(response.headers.get("retry-after", "1")), MAX_THROTTLE_WAIT_S - waited) + 0.2)


def _beside(abuse: Abuse, b_targets: list[Target], rate: float, duration_s: float) -> tuple[AttackResult, AttackResult]:
    """B at its steady rate while A runs ``abuse``: (B's result, A's result)."""
    with ThreadPoolExecutor(1) as pool:
        flood = pool.submit(
            attack,
            abuse.targets,
            duration_s=duration_s,
            rate=abuse.rate,
            workers=abuse.workers,
            timeout_s=abuse.timeout_s,
        )
        b = attack(b_targets, duration_s=duration_s, rate=rate, workers=WORKERS)
        return b, flood.result()


def run(duration_s: float) -> Report:
    report = Report("API: noisy neighbours (one API process; site B steady at 50% of /send's max, site A abusing)")
    env = {
        **_api_env(fresh_database("notify_bench_neighbours"), fresh_topics()),
        "API_TRUSTED_PROXIES": "127.0.0.1",
    }
    bulk_limit = ApiSettings.from_env({**os.environ, **env}).max_bulk_body_bytes
    api, url = _server("api", env)
    phases: list[tuple[Abuse, AttackResult, AttackResult, float]] = []
    try:
        print("registering sites A and B and warming their keys (one bcrypt each) ...", flush=True)
        site_a, site_b = _register(url, 2)
        a_key, b_key = site_a["api_key"], site_b["api_key"]
        for key, client in ((a_key, A_CLIENT), (b_key, B_CLIENT)):
            httpx.post(
                f"{url}/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key, **client}, timeout=30
            ).raise_for_status()
        b_targets = _send_targets(url, [b_key], B_CLIENT)
        capacity = attack(b_targets, duration_s=duration_s, workers=CAPACITY_CONNECTIONS)
        rate = STEADY_SHARE * capacity.throughput
        time.sleep(SETTLE_S)
        baseline = attack(b_targets, duration_s=duration_s, rate=rate, workers=WORKERS)

        # Every made-up key sent at least once (the warm-up second included), whatever the duration.
        made_up_rate = max(MADE_UP_RATE, MADE_UP_KEYS / (1 + duration_s))
        oversized, bulk_body = _oversized_body(), _bulk_body(bulk_limit)
        abuses = [
            Abuse(
                f"1. oversized records: A's {len(oversized) / 1000:.0f} KB /send, 2 loops",
                _targets(url, "send", oversized, [a_key], A_CLIENT),
                rate=0,
                workers=2,
                timeout_s=30,
            ),
            Abuse(
                f"2. wrong secrets on A's lookup id, {WRONG_SECRET_RATE}/s",
                _send_targets(
                    url,
                    _wrong_secret_keys(_lookup_id(a_key), int(WRONG_SECRET_RATE * (1 + duration_s)) + 1),
                    A_CLIENT,
                ),
                rate=WRONG_SECRET_RATE,
                workers=16,
            ),
            Abuse(
                f"3. made-up keys: {MADE_UP_KEYS} at {made_up_rate:.0f}/s",
                _send_targets(url, _made_up_keys(MADE_UP_KEYS), A_CLIENT),
                rate=made_up_rate,
                workers=16,
            ),
            Abuse(
                f"4. bulk: A's {BULK_ITEMS} items, {len(bulk_body) / 2**20:.2f} MiB, 4 loops",
                _targets(url, "bulk", bulk_body, [a_key], A_CLIENT),
                rate=0,
                workers=4,
                timeout_s=60,
                wait_for_a=True,
            ),
        ]
        for abuse in abuses:
            time.sleep(SETTLE_S)
            waited = _wait_until_accepted(url, a_key) if abuse.wait_for_a else 0.0
            print(f"{abuse.name} ...", flush=True)
            b, a = _beside(abuse, b_targets, rate, duration_s)
            phases.append((abuse, b, a, waited))
    finally:
        api.stop()

    report.add(
        f"/send max, B alone at {CAPACITY_CONNECTIONS} connections, accepted/s",
        f"{capacity.throughput:.0f}",
        f"p50 / p99 {capacity.p50_ms:.0f} / {capacity.p99_ms:.0f} ms; non-2xx: {capacity.non_2xx}",
    )
    report.add(
        f"baseline: B alone at {STEADY_SHARE:.0%} of max ({rate:.0f}/s), accepted/s",
        f"{baseline.throughput:.0f}",
        f"p50 / p99 {baseline.p50_ms:.1f} / {baseline.p99_ms:.1f} ms; non-2xx: {baseline.non_2xx}",
        verdict(baseline.throughput >= 0.95 * rate and baseline.non_2xx == 0, "keeps up: >= 0.95 x R, no non-2xx"),
    )
    for abuse, b, a, waited in phases:
        ratio = b.throughput / max(baseline.throughput, 1e-9)
        report.add(
            f"{abuse.name}; B's accepted/s",
            f"{b.throughput:.0f}",
            f"{ratio:.2f} x {baseline.throughput:.0f} (B alone)",
            verdict(ratio >= 0.9, ">= 0.9 x B alone"),
        )
        report.add(
            "  B's p50 / p99 ms",
            f"{b.p50_ms:.1f} / {b.p99_ms:.1f}",
            f"B alone: {baseline.p50_ms:.1f} / {baseline.p99_ms:.1f}",
        )
        report.add(
            "  B's non-2xx",
            f"{b.non_2xx}",
            f"B's codes: {json.dumps(b.status_codes)}{''.join(f'; {e}' for e in b.errors)}",
            verdict(b.non_2xx == 0, "0"),
        )
        report.add(
            "  what A got",
            json.dumps(a.status_codes),
            f"{a.requests} requests counted"
            + (f", after waiting {waited:.0f} s for A's throttle to end" if waited >= 1 else "")
            + "".join(f"; {e}" for e in a.errors),
        )
    return report
