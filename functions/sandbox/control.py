"""The control side, under ``/_sandbox``: what went out, counts, and each provider's faults.

``provider`` is ``sendgrid`` or ``wasender`` (``whatsapp`` is accepted for ``wasender``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from functions.sandbox.faults import parse_faults
from functions.sandbox.ledger import Ledger, Record
from lib.errors import InvalidJSON, NotFound, ValidationFailed

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
        return self._listing(request, lambda ledger: ledger.messages)

    async def calls(self, request: Request) -> Response:
        """Every call with the status it got, refused and failed ones included."""
        return self._listing(request, lambda ledger: ledger.calls)

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

    def _listing(self, request: Request, records: Callable[[Ledger], Iterable[Record]]) -> Response:
        provider = request.query_params.get("provider")
        ledgers = [self._ledger(provider)] if provider else list(self._ledgers.values())
        limit = _limit(request.query_params.get("limit"))
        ordered = sorted(itertools.chain.from_iterable(records(ledger) for ledger in ledgers), key=_received_at)
        items = ordered[-limit:] if limit else ordered
        return JSONResponse({"provider": ALIASES[provider] if provider else None, "count": len(items), "items": items})


def _received_at(record: Record) -> float:
    received_at: float = record["received_at"]
    return received_at


def _limit(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValidationFailed("limit must be a positive integer", details=[{"field": "limit", "value": raw}])
    return int(raw)
