"""The retry / hold / give-up decision after a failed provider call: pure, no I/O."""

from __future__ import annotations

import pytest

from lib.adapters.providers import DeliveryError
from lib.common.resilience import RetryPolicy
from lib.delivery.decisions import ProviderHealth, decide

POLICY = RetryPolicy(max_retries=3, base_delay_s=1.0, max_delay_s=60.0, jitter=0.0)


def error(code: str, *, temporary: bool, retry_after_s: float | None = None) -> DeliveryError:
    return DeliveryError("x", code=code, temporary=temporary, retry_after_s=retry_after_s)


@pytest.mark.parametrize(("retries_done", "delay"), [(0, 1.0), (1, 2.0), (2, 4.0)])
def test_a_temporary_error_is_retried_with_backoff(retries_done: int, delay: float) -> None:
    decision = decide(error("provider_unavailable", temporary=True), retries_done, POLICY)
    assert (decision.retry, decision.delay_s, decision.health) == (True, delay, ProviderHealth.FAILURE)


def test_retries_run_out() -> None:
    decision = decide(error("provider_unavailable", temporary=True), 3, POLICY)
    assert (decision.retry, decision.failure_code, decision.health) == (
        False,
        "retries_exhausted",
        ProviderHealth.FAILURE,
    )


def test_a_permanent_error_gives_up_at_once_with_its_own_code() -> None:
    decision = decide(error("invalid_recipient", temporary=False), 0, POLICY)
    assert (decision.retry, decision.failure_code, decision.health) == (
        False,
        "invalid_recipient",
        ProviderHealth.NEUTRAL,
    )


def test_a_429_holds_every_call_for_its_retry_after_and_retries_no_sooner() -> None:
    decision = decide(error("provider_rate_limited", temporary=True, retry_after_s=7.0), 0, POLICY)
    assert (decision.health, decision.hold_s, decision.retry, decision.delay_s) == (ProviderHealth.HOLD, 7.0, True, 7.0)
    without = decide(error("provider_rate_limited", temporary=True), 0, POLICY)
    assert (without.hold_s, without.delay_s) == (1.0, 1.0)  # no Retry-After: the base delay


def test_jitter_stretches_the_delay() -> None:
    jittery = RetryPolicy(max_retries=3, base_delay_s=1.0, jitter=0.5)
    assert decide(error("provider_unreachable", temporary=True), 0, jittery, rand=lambda: 1.0).delay_s == 1.5


@pytest.mark.parametrize(("status", "code"), [(401, "provider_auth_failed"), (403, "provider_forbidden")])
def test_a_site_account_refusing_its_key_is_the_sites_auth_failure(status: int, code: str) -> None:
    refused = DeliveryError("x", code=code, temporary=False, status=status)
    own = decide(refused, 0, POLICY, own_account=True)
    assert (own.retry, own.failure_code, own.health) == (False, "provider_auth_failed", ProviderHealth.NEUTRAL)
    assert decide(refused, 0, POLICY).failure_code == code  # the global account keeps the provider's own code
