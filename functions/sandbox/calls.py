"""Request pieces both fake providers share: the Bearer key check, a size-limited JSON body, and the first steps
of every call (the injected delay, the key, the body, an injected failure)."""

from __future__ import annotations

import abc
import asyncio
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:  # the ledger reads bodies with parse_json below
    from functions.sandbox.ledger import Ledger
from lib.adapters.sealing import fingerprint
from lib.common.settings import Secret
from lib.domain.validation import strict_int


class BearerKey:
    """``Authorization: Bearer <key>`` against the keys a fake provider accepts (constant-time): one account per
    key, as a provider has one per customer; a comma-separated setting lists several."""

    def __init__(self, keys: Secret) -> None:
        listed = [k.strip() for k in keys.reveal().split(",") if k.strip()]
        self._keys = {k.encode(): fingerprint(Secret(k)) for k in listed}

    def add(self, key: Secret) -> None:
        """One more account (a session created through the provider's session API)."""
        self._keys[key.reveal().encode()] = fingerprint(key)

    def remove(self, key: Secret) -> None:
        self._keys.pop(key.reveal().encode(), None)

    def present(self, request: Request) -> bool:
        return bool(request.headers.get("authorization", "").strip())

    def account(self, request: Request) -> str | None:
        """The fingerprint of the account whose key the call presents (as notify computes it), or None."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode()
        found = None
        for key, account in self._keys.items():  # every key compared, matched or not: constant time
            if hmac.compare_digest(presented, key) and scheme.lower() == "bearer":
                found = account
        return found


async def read_body(request: Request, max_bytes: int) -> bytes | None:
    """The raw body, or None when it is larger than ``max_bytes`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    length = strict_int(declared)
    if length is not None and length > max_bytes:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes | None) -> Any:
    """The decoded body, or None when it is absent or not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Refusals:
    """A provider's own answers to the checks every call meets first."""

    unauthorized: Callable[[bool], Response]  # given whether any key was presented
    injected: Callable[[int, int], Response]  # an injected failure: its status and Retry-After seconds
    too_large: Callable[[], Response]


@dataclass(frozen=True)
class Arrival:
    received_at: float
    raw: bytes
    body: Any  # the decoded JSON; None when it is not JSON
    account: str | None = None  # the key's fingerprint


class FakeEndpoint(abc.ABC):
    """A provider's send endpoint over one ledger and the one key it accepts. Every call first meets the injected
    delay, the key, the size limit and any injected failure (answered with the provider's ``refusals``); what
    passes is the provider's to answer (``answer``). Every answer is recorded in the ledger."""

    refusals: ClassVar[Refusals]
    max_bytes: ClassVar[int]

    def __init__(self, ledger: Ledger, api_key: Secret) -> None:
        self._ledger = ledger
        self._key = BearerKey(api_key)

    async def send(self, request: Request) -> Response:
        received_at = time.time()
        faults = self._ledger.faults
        await faults.wait()
        account = self._key.account(request)
        if account is None:
            unauthorized = self.refusals.unauthorized(self._key.present(request))
            return self._ledger.answer(received_at, None, unauthorized, auth_valid=False)
        raw = await read_body(request, self.max_bytes)
        injected = faults.take_failure(account)
        if injected is not None:
            refusal = self.refusals.injected(injected, faults.retry_after_s)
            return self._ledger.answer(received_at, raw, refusal, account=account)
        if raw is None:
            return self._ledger.answer(received_at, None, self.refusals.too_large(), account=account)
        response = self.answer(Arrival(received_at, raw, parse_json(raw), account))
        while self._ledger.faults.hang:  # taken, recorded, and not answered (see Faults)
            await asyncio.sleep(0.05)
        return response

    @abc.abstractmethod
    def answer(self, arrival: Arrival) -> Response:
        """The provider's own checks and its answer to a call that passed the common ones."""
