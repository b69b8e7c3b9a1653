"""The control side, under ``/_sandbox``: what went out, counts, and each provider's faults.

``provider`` is ``sendgrid`` or ``wasender`` (``whatsapp`` is accepted for ``wasender``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.sandbox.faults import parse_faults
from functions.sandbox.ledger import Call, Ledger
from lib.domain.errors import InvalidJSON, NotFound, ValidationFailed
from lib.domain.validation import strict_int

ALIASES = {"sendgrid": "sendgrid", "wasender": "wasender", "whatsapp": "wasender"}


class Control:
    def __init__(self, ledgers: dict[str, Ledger]) -> None:
        self._ledgers = ledgers

    def routes(self) -> list[Route]:
        return [
            Route("/_sandbox/messages", self.messages, methods=["GET"]),
            Route("/_sandbox/messages", self.clear, methods=["DELETE"]),
            Route("/_sandbox/calls", self.calls, methods=["GET"]),
            Route("/_sandbox/stats", self.stats, methods=["GET"]),
            Route("/_sandbox/faults/{provider}", self.get_faults, methods=["GET"]),
            Route("/_sandbox/faults/{provider}", self.put_faults, methods=["PUT"]),
            Route("/_sandbox/faults/{provider}", self.reset_faults, methods=["DELETE"]),
        ]

    async def messages(self, request: Request) -> Response:
        """``?provider=&limit=``: the accepted calls (what went out), oldest first, the newest ``limit``."""
        return await self._listing(request, lambda ledger: ledger.messages)

    async def calls(self, request: Request) -> Response:
        """Every call with the status it got, refused and failed ones included."""
        return await self._listing(request, lambda ledger: ledger.calls)

    async def clear(self, _request: Request) -> Response:
        for ledger in self._ledgers.values():
            ledger.clear()
        return Response(status_code=204)

    async def stats(self, _request: Request) -> Response:
        """Calls per provider per status answered, e.g. ``{"sendgrid": {"202": 10, "503": 2}, ...}``."""
        return JSONResponse(
            {name: {str(s): n for s, n in sorted(ledger.stats.items())} for name, ledger in self._ledgers.items()}
        )

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self._ledger(request.path_params["provider"]).faults.public())

    async def put_faults(self, request: Request) -> Response:
        ledger = self._ledger(request.path_params["provider"])
        try:
            raw = json.loads(await request.body() or b"{}")
        except ValueError as exc:
            raise InvalidJSON(f"the body is not valid JSON: {exc}") from None
        ledger.faults = parse_faults(raw, ledger.default_faults)
        return JSONResponse(ledger.faults.public())

    async def reset_faults(self, request: Request) -> Response:
        ledger = self._ledger(request.path_params["provider"])
        ledger.reset_faults()
        return JSONResponse(ledger.faults.public())

    def _ledger(self, provider: str) -> Ledger:
        name = ALIASES.get(provider)
        if name is None:
            raise NotFound(f"no provider {provider!r}: use one of {sorted(ALIASES)}")
        return self._ledgers[name]

    async def _listing(self, request: Request, calls: Callable[[Ledger], Iterable[Call]]) -> Response:
        provider = request.query_params.get("provider")
        ledgers = [self._ledger(provider)] if provider else list(self._ledgers.values())
        limit = _limit(request.query_params.get("limit"))
        found = [(call, ledger) for ledger in ledgers for call in calls(ledger)]  # a snapshot: calls are immutable
        name = ALIASES[provider] if provider else None
        # Decoding and encoding a long listing takes a while: off the event loop, so provider calls go on.
        return await run_in_threadpool(_render, name, found, limit)


def _render(provider: str | None, found: list[tuple[Call, Ledger]], limit: int | None) -> Response:
    found.sort(key=_received_at)
    items = [ledger.view(call) for call, ledger in (found[-limit:] if limit else found)]
    return JSONResponse({"provider": provider, "count": len(items), "items": items})


def _received_at(found: tuple[Call, Ledger]) -> float:
    return found[0].received_at


def _limit(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    limit = strict_int(raw)
    if limit is None or limit < 1:
        raise ValidationFailed("limit must be a positive integer", details=[{"field": "limit", "value": raw}])
    return limit
