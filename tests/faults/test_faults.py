"""Faults under load, each against the promise (``scenario.check``): the broker and the database stopped and
killed, a worker cut off from each of them without being killed, a provider that stops answering, the API killed
with requests in flight. Each also shows that its fault did bite (requests refused, or deliveries stalled)."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import Stack
from tests.faults.conftest import FAULT_SECONDS, Infra
from tests.faults.load import STEADY
from tests.faults.report import Report
from tests.faults.scenario import Outcome, check, refused_or_unanswered, run


def stalled(outcome: Outcome) -> bool:
    """Deliveries stopped in the middle of the fault (less than a second's worth of load went out)."""
    return outcome.sent_during_fault < STEADY.messages_per_s


def test_kafka_stopped(infra: Infra, fault_stack: Stack, report: Report) -> None:
    outcome = run(
        fault_stack,
        report,
        "Kafka stopped (SIGTERM)",
        lambda: infra.kafka("stop"),
        lambda: infra.kafka("start"),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert refused_or_unanswered(outcome) > 0 and stalled(outcome)


def test_kafka_killed(infra: Infra, fault_stack: Stack, report: Report) -> None:
    outcome = run(
        fault_stack, report, "Kafka killed (SIGKILL)", infra.kill_kafka, lambda: infra.kafka("start"), FAULT_SECONDS
    )
    check(outcome, fault_stack)
    assert refused_or_unanswered(outcome) > 0 and stalled(outcome)


def test_postgres_stopped(infra: Infra, fault_stack: Stack, report: Report) -> None:
    outcome = run(
        fault_stack,
        report,
        "PostgreSQL stopped (fast)",
        lambda: infra.pg("stop"),
        lambda: infra.pg("start"),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert refused_or_unanswered(outcome) > 0 and stalled(outcome)


def test_postgres_killed(infra: Infra, fault_stack: Stack, report: Report) -> None:
    outcome = run(
        fault_stack,
        report,
        "PostgreSQL postmaster killed (SIGKILL)",
        infra.kill_pg,
        lambda: infra.pg("start"),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert refused_or_unanswered(outcome) > 0 and stalled(outcome)


def test_workers_cut_off_from_kafka(infra: Infra, fault_stack: Stack, report: Report) -> None:
    outcome = run(
        fault_stack,
        report,
        "workers cut off from Kafka",
        lambda: infra.host.down("kafka"),
        lambda: infra.host.up("kafka"),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert stalled(outcome)


def test_workers_cut_off_from_postgres(infra: Infra, fault_stack: Stack, report: Report) -> None:
    # Their 5 s leases run out during the cut while they still hold the messages.
    outcome = run(
        fault_stack,
        report,
        "workers cut off from PostgreSQL",
        lambda: infra.host.down("pg"),
        lambda: infra.host.up("pg"),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert stalled(outcome)


def test_providers_stop_answering(fault_stack: Stack, report: Report) -> None:
    def hang(on: bool) -> None:
        for provider in ("sendgrid", "wasender"):
            httpx.put(f"{fault_stack.sandbox_url}/_sandbox/faults/{provider}", json={"hang": on}).raise_for_status()

    outcome = run(
        fault_stack,
        report,
        "providers take messages, never answer",
        lambda: hang(True),
        lambda: hang(False),
        FAULT_SECONDS,
    )
    check(outcome, fault_stack)
    assert stalled(outcome) and outcome.figures.counted > 0  # the unanswered calls were retried, and counted


def test_api_killed_with_requests_in_flight(fault_stack: Stack, report: Report) -> None:
    def restart() -> None:
        time.sleep(2.0)  # as a kubelet would, after a moment
        fault_stack.api.start()

    outcome = run(fault_stack, report, "API killed (SIGKILL), restarted", fault_stack.api.kill, restart, 2.0)
    check(outcome, fault_stack)
    assert refused_or_unanswered(outcome) > 0
