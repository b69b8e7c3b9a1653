"""A steady open-loop load through /send and /bulk, run in a thread while a test injects a fault.

It behaves as a careful client does: every message carries an Idempotency-Key, and a request answered 503 or
never answered (the API gone, a timeout) is tried again with the same keys until it is answered or the load's
retry deadline passes. Every answer is kept, so a test can tell which messages were accepted and whether any
answer was a server error other than the documented 503.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

# The documented temporary answers: a client tries these again with the same keys.
RETRY_STATUSES = {503}
TEMPORARY_CODES = {"kafka_unavailable", "database_unavailable", "unavailable"}  # a bulk item's, the same
UNANSWERED = 0  # the status kept for a request that got no HTTP answer


@dataclass(frozen=True)
class Shape:
    """What the load sends each second: single sends (one in ``whatsapp_every`` on WhatsApp) and bulk requests."""

    sends_per_s: float = 30.0
    bulks_per_s: float = 1.0
    bulk_size: int = 20
    whatsapp_every: int = 5

    @property
    def messages_per_s(self) -> float:
        return self.sends_per_s + self.bulks_per_s * self.bulk_size

    def describe(self) -> str:
        return (
            f"{self.sends_per_s:g} /send + {self.bulks_per_s:g} /bulk x {self.bulk_size} per s"
            f" ({self.messages_per_s:g} msg/s)"
        )


STEADY = Shape()


@dataclass
class Answer:
    status: int  # UNANSWERED when the request got no answer
    at: float  # wall clock
    json_error: bool  # the body was the API's JSON error


@dataclass
class Tracked:
    """One message the load asked for, by its idempotency key."""

    key: str
    channel: str
    message_id: str | None = None  # from the 202
    accepted_at: float | None = None


@dataclass
class LoadResult:
    messages: dict[str, Tracked] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    @property
    def accepted(self) -> dict[str, Tracked]:
        """The accepted messages by message id."""
        return {t.message_id: t for t in self.messages.values() if t.message_id is not None}

    def server_errors(self) -> list[Answer]:
        """5xx answers other than the documented 503 with the API's JSON error."""
        return [a for a in self.answers if a.status >= 500 and not (a.status in RETRY_STATUSES and a.json_error)]

    def first_accepted_after(self, moment: float) -> float | None:
        later = [t.accepted_at for t in self.messages.values() if t.accepted_at is not None and t.accepted_at > moment]
        return min(later, default=None)


class Load:
    def __init__(self, api_url: str, site_key: str, shape: Shape, tag: str) -> None:
        self.api_url = api_url
        self.site_key = site_key
        self.shape = shape
        self.tag = tag
        self.result = LoadResult()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.retry_deadline = float("inf")

    # --- the thread -----------------------------------------------------------------------------------------

    def start(self) -> Load:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="fault-load", daemon=True)
        self._thread.start()
        return self

    def stop(self, retry_for_s: float) -> LoadResult:
        """Stop sending new messages; requests still being tried get ``retry_for_s`` more seconds."""
        self.retry_deadline = time.monotonic() + retry_for_s
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=retry_for_s + 60)
        assert not self._thread.is_alive(), "the load did not finish"
        return self.result

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30, limits=limits) as client:
            tasks: set[asyncio.Task[None]] = set()
            started = time.monotonic()
            sends = bulks = 0
            while not self._stop.is_set():
                elapsed = time.monotonic() - started
                while sends < elapsed * self.shape.sends_per_s:
                    channel = "whatsapp" if sends % self.shape.whatsapp_every == 0 else "email"
                    tasks.add(asyncio.create_task(self._send(client, self._message(channel))))
                    sends += 1
                while bulks < elapsed * self.shape.bulks_per_s:
                    items = [self._message("email") for _ in range(self.shape.bulk_size)]
                    tasks.add(asyncio.create_task(self._bulk(client, items)))
                    bulks += 1
                tasks = {t for t in tasks if not t.done()}
                await asyncio.sleep(0.01)
            await asyncio.gather(*tasks)

    # --- requests ---------------------------------------------------------------------------------------------

    def _message(self, channel: str) -> Tracked:
        key = f"{self.tag}-{uuid.uuid4().hex}"
        tracked = Tracked(key, channel)
        self.result.messages[key] = tracked
        return tracked

    @staticmethod
    def _payload(message: Tracked) -> dict[str, Any]:
        body = f"fault {message.key}"  # the sandbox's record of a WhatsApp text is matched by this
        if message.channel == "whatsapp":
            return {"channel": "whatsapp", "recipient": "+14155550100", "body": body, "idempotency_key": message.key}
        return {
            "channel": "email",
            "recipient": "load@example.com",
            "subject": "fault",
            "body": body,
            "idempotency_key": message.key,
        }

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = await client.post(path, json=body, headers={"X-Site-Key": self.site_key})
        except httpx.HTTPError:
            self.result.answers.append(Answer(UNANSWERED, time.time(), False))
            return None
        try:
            json_error = isinstance(response.json().get("error", {}).get("code"), str)
        except (ValueError, AttributeError):
            json_error = False
        self.result.answers.append(Answer(response.status_code, time.time(), json_error))
        return response

    async def _until_answered(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> Any:
        """The JSON of the first answer that is not temporary (None if none came before the retry deadline)."""
        delay = 0.25
        while True:
            response = await self._post(client, path, body)
            if response is not None and response.status_code not in RETRY_STATUSES and response.status_code < 500:
                return response.json() if response.status_code == 202 else None
            if time.monotonic() > self.retry_deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _send(self, client: httpx.AsyncClient, message: Tracked) -> None:
        answer = await self._until_answered(client, "/api/v1/notifications/send", self._payload(message))
        if answer is not None:
            message.message_id, message.accepted_at = answer["message_id"], time.time()

    async def _bulk(self, client: httpx.AsyncClient, items: list[Tracked]) -> None:
        waiting = items
        while waiting:
            answer = await self._until_answered(
                client, "/api/v1/notifications/bulk", {"items": [self._payload(m) for m in waiting]}
            )
            if answer is None:
                return
            retry = []
            for message, result in zip(waiting, answer["results"], strict=True):
                if result["status"] == "accepted":
                    message.message_id, message.accepted_at = result["message_id"], time.time()
                elif result["error"]["code"] in TEMPORARY_CODES:
                    retry.append(message)  # refused for now (Kafka took the others): try it again
            if retry and time.monotonic() > self.retry_deadline:
                return
            if retry:
                await asyncio.sleep(0.5)
            waiting = retry
