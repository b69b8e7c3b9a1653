"""Fault injection for one fake provider: latency, queued or random failures, 429s, rejected recipients, and a
provider that takes messages but stops answering."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from lib.domain.errors import ValidationFailed


@dataclass
class Faults:
    """One provider's behaviour, as ``PUT /_sandbox/faults/{provider}`` sets it (absent fields: defaults).

    Each call first waits ``latency_ms`` plus up to ``latency_jitter_ms``; then the next ``rate_limit_next``
    calls answer 429 with ``Retry-After: retry_after_s``, the next ``fail_next`` calls answer ``fail_status``,
    and after those a ``fail_rate`` share of calls does. A valid request naming a recipient in
    ``reject_recipients`` gets the provider's own invalid-recipient error with ``reject_status``.
    While ``hang`` is on, a call that passes takes its message (recorded as accepted) but its answer is held until
    ``hang`` is turned off: the provider that stops answering, at its worst for a client (it cannot know whether
    the message went). A message to one of ``bounce_recipients`` is taken, and its Event Webhook says it bounced
    (hard). With ``account`` (a key's fingerprint, as notify shows it) the injected failures meet only
    that account's calls: one customer's plan running out while the others' go on.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    fail_rate: float = 0.0
    fail_status: int = 503
    fail_next: int = 0
    rate_limit_next: int = 0
    retry_after_s: int = 1
    reject_recipients: list[str] = field(default_factory=list)
    reject_status: int = 400
    hang: bool = False
    account: str | None = None
    bounce_recipients: list[str] = field(default_factory=list)
    rejected: frozenset[str] = field(init=False, repr=False, compare=False)
    bounced: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rejected = frozenset(r.strip().lower() for r in self.reject_recipients)
        self.bounced = frozenset(r.strip().lower() for r in self.bounce_recipients)

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    async def wait(self) -> None:
        delay_ms = self.latency_ms + (random.uniform(0, self.latency_jitter_ms) if self.latency_jitter_ms else 0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)

    def take_failure(self, account: str | None = None) -> int | None:
        """The status this call (of ``account``) must fail with, if any; counts down the queued failures."""
        if self.account is not None and account != self.account:
            return None
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429
        if self.fail_next > 0:
            self.fail_next -= 1
            return self.fail_status
        if self.fail_rate and random.random() < self.fail_rate:
            return self.fail_status
        return None

    def rejects(self, recipient: str) -> bool:
        return bool(self.rejected) and recipient.strip().lower() in self.rejected


_NUMBERS = {"latency_ms": (0, 600_000), "latency_jitter_ms": (0, 600_000), "fail_rate": (0, 1)}
_INTEGERS = {
    "fail_status": (400, 599),
    "fail_next": (0, 10_000_000),
    "rate_limit_next": (0, 10_000_000),
    "retry_after_s": (0, 86_400),
    "reject_status": (400, 599),
}


def parse_faults(raw: Any, default: Faults) -> Faults:
    """A full setting from a PUT body; fields left out take the provider's defaults."""
    if not isinstance(raw, dict):
        raise ValidationFailed("the body must be a JSON object")
    known = {f.name for f in dataclasses.fields(Faults) if f.init}
    problems = [{"field": k, "problem": "unknown field"} for k in raw if k not in known]
    for name, (low, high) in (_NUMBERS | _INTEGERS).items():
        value = raw.get(name)
        integral = name in _INTEGERS
        ok_type = isinstance(value, int) if integral else isinstance(value, int | float)
        if value is not None and (isinstance(value, bool) or not ok_type or not low <= value <= high):
            kind = "an integer" if integral else "a number"
            problems.append({"field": name, "problem": f"must be {kind} from {low} to {high}"})
    recipients = raw.get("reject_recipients")
    bounces = raw.get("bounce_recipients")
    if bounces is not None and not (isinstance(bounces, list) and all(isinstance(r, str) for r in bounces)):
        problems.append({"field": "bounce_recipients", "problem": "must be a list of strings"})
    if raw.get("hang") is not None and not isinstance(raw["hang"], bool):
        problems.append({"field": "hang", "problem": "must be true or false"})
    if raw.get("account") is not None and not isinstance(raw["account"], str):
        problems.append({"field": "account", "problem": "must be a key's fingerprint (a string)"})
    if recipients is not None and not (isinstance(recipients, list) and all(isinstance(r, str) for r in recipients)):
        problems.append({"field": "reject_recipients", "problem": "must be a list of strings"})
    if problems:
        raise ValidationFailed("invalid fault settings", details=problems)
    return dataclasses.replace(default, **{k: v for k, v in raw.items() if v is not None})
