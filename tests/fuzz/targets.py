"""Fuzz targets: the entry points that read what others send (request bodies, query strings, admin changes,
Kafka records, provider answers). Each takes raw bytes and states its contract: it returns, or it raises the
errors its caller turns into a clear answer. Anything else is a crash: a 500 for a client, or a worker that
retries a record forever.

The same functions run under atheris (``python -m tests.fuzz``, coverage-guided, for a bounded time) and under
pytest over the seeds and every crash found so far (``tests/fuzz/test_regressions.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import atheris
import httpx
from starlette.requests import Request

from lib.adapters.http import read_json
from lib.adapters.providers import MAX_RETRY_AFTER_S, DeliveryError, parse_retry_after, sendgrid, wasender
from lib.domain.errors import NotifyError
from lib.domain.notification import NotificationRecord
from lib.domain.validation import parse_notification
from lib.services.reading import parse_list_filters
from lib.services.site_metrics import parse_range
from lib.services.sites import check_site_name, parse_site_changes

Target = Callable[[bytes], None]
_LOOP = asyncio.new_event_loop()
_SITE = uuid.UUID(int=1)


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def notification(data: bytes) -> None:
    """A /send body or a bulk item: valid, or ValidationFailed; a valid one survives the trip through Kafka."""
    fdp = atheris.FuzzedDataProvider(data)
    key = fdp.ConsumeUnicodeNoSurrogates(8) if fdp.ConsumeBool() else None
    body = _json_or_none(fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        request = parse_notification(body, idempotency_key=key)
    except NotifyError:
        return
    record = request.to_record(uuid.uuid4(), _SITE, "2026-12-03T00:00:00+00:00")
    assert NotificationRecord.from_bytes(record.to_bytes()) == record


def query(data: bytes) -> None:
    """The list and metrics routes' query strings: filters, or ValidationFailed."""
    params = dict(parse_qsl(data.decode("latin-1"), keep_blank_values=True))
    for parse in (parse_list_filters, parse_range):
        with contextlib.suppress(NotifyError):
            parse(params)


def site_admin(data: bytes) -> None:
    """An admin PATCH body and a site name: accepted, or ValidationFailed."""
    body = _json_or_none(data)
    for check in (parse_site_changes, check_site_name):
        with contextlib.suppress(NotifyError):
            check(body)


def request_body(data: bytes) -> None:
    """read_json over any headers and body, in any chunks: JSON, or the 400/413/415 it means."""
    fdp = atheris.FuzzedDataProvider(data)
    content_type = fdp.PickValueInList([b"application/json", b"text/plain", b"Application/JSON; charset=utf-8"])
    headers = [(b"content-type", content_type)]
    if fdp.ConsumeBool():
        headers.append((b"content-length", fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))))
    max_bytes = fdp.ConsumeIntInRange(0, 4096)
    chunks = [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 512)) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    messages = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    with contextlib.suppress(NotifyError):
        _LOOP.run_until_complete(read_json(Request(scope, receive), max_bytes))


def kafka_record(data: bytes) -> None:
    """A record as a worker reads it: a notification record, or the errors the pipeline dead-letters on."""
    with contextlib.suppress(ValueError):
        NotificationRecord.from_bytes(data)


def provider_answer(data: bytes) -> None:
    """Any answer SendGrid or WASender could give: a message id, or a DeliveryError; a Retry-After is read as a
    bounded wait or not at all."""
    fdp = atheris.FuzzedDataProvider(data)
    read = fdp.PickValueInList([sendgrid.read_answer, wasender.read_answer])
    status = fdp.ConsumeIntInRange(100, 599)
    retry_after = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40))
    headers = {"retry-after": retry_after.encode("utf-8", "surrogateescape")} if retry_after else {}
    response = httpx.Response(status, headers=headers, content=fdp.ConsumeBytes(fdp.remaining_bytes()))
    try:
        provider_id = read(response)
        assert isinstance(provider_id, str)
    except DeliveryError as exc:
        wait = exc.retry_after_s
        assert wait is None or (math.isfinite(wait) and 0 <= wait <= MAX_RETRY_AFTER_S), wait
    wait = parse_retry_after(retry_after)
    assert wait is None or 0 <= wait <= MAX_RETRY_AFTER_S, wait


TARGETS: dict[str, Target] = {
    "notification": notification,
    "query": query,
    "site_admin": site_admin,
    "request_body": request_body,
    "kafka_record": kafka_record,
    "provider_answer": provider_answer,
}
