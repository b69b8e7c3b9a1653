"""One fault scenario: workers and a site on a fresh stack, the load, the fault injected mid-run and taken away,
then the accounting of every message the API accepted against PostgreSQL and the sandbox's record of provider
calls. ``check`` holds each scenario to the promise; the figures go to the report."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from tests.e2e.conftest import Stack
from tests.faults.load import STEADY, UNANSWERED, Load, LoadResult, Shape
from tests.faults.report import Figures, Report
from tests.processes import Deployable, metric
from tests.test_database import METRICS_FROM_LOG, METRICS_TABLE

BEFORE_S = 4.0  # load before the fault
AFTER_S = 6.0  # load after it
RETRY_FOR_S = 40.0  # how long the load's clients keep trying a request after the load stops
DRAIN_S = 120.0  # every accepted message final within this, after the fault ends
RECOVER_S = 30.0  # the stated bound: a 202 and a SENT again within this after the fault ends


@dataclass
class Outcome:
    figures: Figures
    load: LoadResult
    states: dict[str, dict[str, Any]]
    copies: Counter[str]  # provider calls that took the message, by message id
    fault_at: float
    back_at: float
    sent_during_fault: int  # messages SENT in the middle of the fault window


def _states(stack: Stack, ids: list[str]) -> dict[str, dict[str, Any]]:
    with psycopg.connect(stack.pg_dsn) as conn:
        rows = conn.execute(
            "SELECT id::text, status::text, failure_code, extract(epoch FROM sent_at)::float8 AS sent_at,"
            " extract(epoch FROM updated_at)::float8 AS updated_at FROM message_logs WHERE id = ANY(%s::uuid[])",
            (ids,),
        ).fetchall()
    return {r[0]: {"status": r[1], "failure_code": r[2], "sent_at": r[3], "updated_at": r[4]} for r in rows}


def _wait_final(stack: Stack, ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = _states(stack, ids)
        done = len(states) == len(ids) and all(s["status"] in ("SENT", "FAILED") for s in states.values())
        if done or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


def _copies(stack: Stack, load: LoadResult) -> Counter[str]:
    """Accepted provider calls per notify message id (WhatsApp texts carry the load's idempotency key)."""
    copies: Counter[str] = Counter()
    listing = httpx.get(f"{stack.sandbox_url}/_sandbox/messages", timeout=30).json()["items"]
    for item in listing:
        if item["provider"] == "sendgrid":
            copies[item["custom_args"].get("notify_message_id")] += 1
        else:
            tracked = load.messages.get(item["text"].removeprefix("fault "))
            copies[tracked.message_id if tracked and tracked.message_id else f"unknown:{item['text']}"] += 1
    return copies


def _possible_resends(workers: list[Deployable]) -> int:
    return int(
        sum(
            metric(w.health_url.replace("/healthz", "/metrics"), "notify_worker_possible_resends_total", channel=c)
            for w in workers
            for c in ("email", "whatsapp")
        )
    )


def run(
    stack: Stack,
    report: Report,
    scenario: str,
    inject: Callable[[], None],
    restore: Callable[[], None],
    fault_s: float,
    shape: Shape = STEADY,
    **worker_env: str,
) -> Outcome:
    workers = [stack.worker("email", **worker_env), stack.worker("whatsapp", **worker_env)]
    site = stack.register()
    load = Load(stack.api_url, site["X-Site-Key"], shape, tag=stack.kafka.topic_prefix).start()
    time.sleep(BEFORE_S)
    fault_at = time.time()
    inject()
    time.sleep(max(0.0, fault_s - (time.time() - fault_at)))
    restore()
    back_at = time.time()
    time.sleep(AFTER_S)
    result = load.stop(retry_for_s=RETRY_FOR_S)
    accepted = list(result.accepted)
    states = _wait_final(stack, accepted, DRAIN_S - AFTER_S)
    time.sleep(0.5)  # calls still being answered in the sandbox
    copies = _copies(stack, result)
    counted = _possible_resends(workers)
    sent = [s for s in states.values() if s["status"] == "SENT"]
    failed = [s for s in states.values() if s["status"] == "FAILED"]
    lost = [m for m in accepted if states.get(m, {}).get("status") not in ("SENT", "FAILED")]
    lost += [m for m, s in states.items() if s["status"] == "SENT" and copies[m] == 0]
    first_202 = result.first_accepted_after(back_at)
    first_sent = min((s["sent_at"] for s in sent if s["sent_at"] > back_at), default=None)
    recover_s = max(first_202 or float("inf"), first_sent or float("inf")) - back_at
    drained_s = max((max(s["sent_at"] or 0, s["updated_at"]) for s in states.values()), default=back_at) - back_at
    middle = (fault_at + 0.3 * fault_s, back_at - 0.1 * fault_s)
    figures = Figures(
        scenario=scenario,
        load=shape.describe(),
        accepted=len(accepted),
        sent=len(sent),
        failed=len(failed),
        lost=len(lost),
        twice=sum(n - 1 for m, n in copies.items() if n > 1 and m in states),
        counted=counted,
        server_errors=len(result.server_errors()),
        recover_s=recover_s,
        drained_s=max(drained_s, 0.0),
    )
    report.add(figures)
    return Outcome(
        figures,
        result,
        states,
        copies,
        fault_at,
        back_at,
        sum(1 for s in sent if middle[0] <= s["sent_at"] <= middle[1]),
    )


def check(outcome: Outcome, stack: Stack) -> None:
    """The promise, for any fault: every 202 final, nothing lost, every repeat counted, no unexplained 5xx, the
    daily metrics equal to the log, recovery within the stated bound."""
    f = outcome.figures
    assert f.accepted > 0, Counter(a.status for a in outcome.load.answers)
    assert f.server_errors == 0, outcome.load.server_errors()[:5]
    assert f.lost == 0, f
    assert all(s["failure_code"] for s in outcome.states.values() if s["status"] == "FAILED")
    assert f.uncounted == 0, (f.twice, f.counted)
    assert all(n <= 1 + f.counted for n in outcome.copies.values())
    assert not [m for m in outcome.copies if m.startswith("unknown:")]
    assert f.recover_s <= RECOVER_S, f
    with psycopg.connect(stack.pg_dsn) as conn:  # one snapshot for both (a swept message may still be moving)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        assert conn.execute(METRICS_TABLE).fetchall() == conn.execute(METRICS_FROM_LOG).fetchall()


def refused_or_unanswered(outcome: Outcome) -> int:
    """Requests the fault made the API refuse (503) or leave unanswered: proof that it hit the API's side."""
    return sum(1 for a in outcome.load.answers if a.status in (503, UNANSWERED))
