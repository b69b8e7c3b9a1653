"""Scheduled sends end to end: API, email worker, sandbox SendGrid; the API killed while messages wait."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from tests.e2e.conftest import Stack
from tests.e2e.test_delivery import emails, is_final, send, sent_ids


def test_scheduled_messages_go_once_after_their_time_across_an_api_restart(stack: Stack) -> None:
    stack.worker("email")
    site = stack.register()
    due = datetime.now(UTC) + timedelta(seconds=5)
    first, cancelled, later = (
        send(stack, site, {**item, "send_at": (due + timedelta(seconds=delay)).isoformat()})
        for item, delay in zip(emails(3, "scheduled"), (0, 0, 2), strict=True)
    )
    cancel = stack.http.post(f"/api/v1/notifications/{cancelled}/cancel", headers={"X-Site-Key": site["X-Site-Key"]})
    assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED"
    time.sleep(1.5)
    assert not sent_ids(stack)  # nothing before its time
    assert {s["status"] for s in stack.statuses([first, later]).values()} == {"SCHEDULED"}

    stack.api.kill()  # the schedule is in PostgreSQL, not in the process
    stack.api.start()
    states = stack.wait_until([first, later], is_final, timeout_s=40)
    assert {s["status"] for s in states.values()} == {"SENT"}
    time.sleep(2)  # room for a second send, were there one
    calls = sent_ids(stack)
    assert calls == {first: 1, later: 1}, calls  # each once; the cancelled one never
    assert stack.statuses([cancelled])[cancelled]["status"] == "CANCELLED"
    with psycopg.connect(stack.pg_dsn) as conn:
        rows = conn.execute(
            "SELECT sent_at >= send_at FROM message_logs WHERE id = ANY(%s::uuid[])", ([first, later],)
        ).fetchall()
    assert rows == [(True,), (True,)]  # not before its send_at
