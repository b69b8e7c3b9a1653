"""What to do after a failed provider call: a pure decision, from the error and the retries so far.

- retry: a temporary error (timeout, 5xx, 429) with retries left, after ``delay_s`` (backoff, or the provider's
  Retry-After when longer);
- give up: a permanent error (the same request will never succeed), or retries exhausted; the message ends
  FAILED with ``failure_code``;
- and, either way, what the call says of the provider: a 429 holds every call for ``hold_s`` (an order to slow
  down, not a failure); another temporary error counts towards opening the circuit; a permanent one is neutral.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from lib.adapters.providers import DeliveryError
from lib.common.resilience import RetryPolicy


class ProviderHealth(Enum):
    HOLD = "hold"  # 429: everyone waits out the Retry-After
    FAILURE = "failure"  # temporary failure: counts towards opening the circuit
    NEUTRAL = "neutral"  # the provider works; this request is wrong


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay_s: float  # before the retry (0 when giving up)
    failure_code: str | None  # when giving up
    health: ProviderHealth
    hold_s: float = 0.0  # with ProviderHealth.HOLD


# A site's own account refusing its key: the site's to fix (its key is wrong, revoked or its plan lapsed).
_OWN_KEY_REFUSED = {401, 403}


def decide(
    error: DeliveryError,
    retries_done: int,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
    *,
    own_account: bool = False,
) -> Decision:
    if error.code == "provider_rate_limited":
        health, hold_s = ProviderHealth.HOLD, error.retry_after_s or policy.base_delay_s
    else:
        health, hold_s = (ProviderHealth.FAILURE if error.temporary else ProviderHealth.NEUTRAL), 0.0
    if error.temporary and policy.should_retry(retries_done):
        return Decision(True, policy.delay_s(retries_done + 1, error.retry_after_s, rand), None, health, hold_s)
    code = error.code if not error.temporary else "retries_exhausted"
    if own_account and error.http_status in _OWN_KEY_REFUSED:
        code = "provider_auth_failed"
    return Decision(False, 0.0, code, health, hold_s)
