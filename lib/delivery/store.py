"""The worker's reads and writes of ``message_logs`` (every write guarded by the claim), and the small interface
the pipeline needs of them (``Store``), so the pipeline can be tested without PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any, Protocol

from lib.adapters import db
from lib.common.batching import Batcher


class Store(Protocol):
    worker_id: str
    lease_s: float

    async def claim(self, message_id: uuid.UUID) -> dict[str, Any] | None: ...
    async def state(self, message_id: uuid.UUID) -> dict[str, Any] | None: ...
    async def start_attempt(self, message_id: uuid.UUID) -> bool: ...
    async def renew(self, message_id: uuid.UUID) -> bool: ...
    async def record_error(self, message_id: uuid.UUID, entry: dict[str, Any]) -> None: ...
    async def mark_failed(self, message_id: uuid.UUID, code: str, error: str, entry: dict[str, Any]) -> bool: ...
    async def mark_unknown_failed(self, message_id: uuid.UUID, code: str, error: str) -> None: ...
    async def release(self, message_ids: list[uuid.UUID]) -> None: ...
    async def mark_sent(self, message_id: uuid.UUID, provider_message_id: str) -> bool: ...
    async def attachment_files(self, message_id: uuid.UUID) -> list[dict[str, Any]]: ...


class DeliveryStore:
    """The worker's reads and writes of ``message_logs``; every write is guarded by the claim."""

    def __init__(self, pool: db.Pool, worker_id: str, lease_s: float) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.lease_s = lease_s
        # Claims and SENT writes of messages handled at the same moment share one statement each.
        self._claims: Batcher[uuid.UUID, dict[str, Any] | None] = Batcher(self._claim_batch)
        self._sent: Batcher[tuple[uuid.UUID, str], bool] = Batcher(self._sent_batch)

    async def _one(self, name: str, **params: Any) -> dict[str, Any] | None:
        return await db.fetch_one(self.pool, name, params)

    async def claim(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        """The claimed row, or None when the message is not free to take."""
        return await self._claims.submit(message_id)

    async def _claim_batch(self, ids: list[uuid.UUID]) -> list[dict[str, Any] | None]:
        params = {"ids": ids, "worker": self.worker_id, "lease_s": self.lease_s}
        rows = {r["id"]: r for r in await db.fetch_all(self.pool, "claim_messages", params)}
        # Two records of one message (a re-publish, a client's retry) can meet in one batch: the row goes to the
        # first alone, or both would send it.
        return [rows.pop(message_id, None) for message_id in ids]

    async def state(self, message_id: uuid.UUID) -> dict[str, Any] | None:
        return await self._one("message_state", id=message_id)

    async def start_attempt(self, message_id: uuid.UUID) -> bool:
        row = await self._one("start_attempt", id=message_id, worker=self.worker_id, lease_s=self.lease_s)
        return row is not None

    async def renew(self, message_id: uuid.UUID) -> bool:
        return await self._one("renew_lease", id=message_id, worker=self.worker_id, lease_s=self.lease_s) is not None

    async def record_error(self, message_id: uuid.UUID, entry: dict[str, Any]) -> None:
        params = {"id": message_id, "worker": self.worker_id, "error": entry["error"], "entry": json.dumps([entry])}
        await db.execute(self.pool, "record_attempt_error", params)

    async def mark_failed(self, message_id: uuid.UUID, code: str, error: str, entry: dict[str, Any]) -> bool:
        row = await self._one(
            "mark_failed", id=message_id, worker=self.worker_id, code=code, error=error, entry=json.dumps([entry])
        )
        return row is not None

    async def mark_unknown_failed(self, message_id: uuid.UUID, code: str, error: str) -> None:
        await self._one("mark_unknown_failed", id=message_id, code=code, error=error)

    async def attachment_files(self, message_id: uuid.UUID) -> list[dict[str, Any]]:
        return await db.fetch_all(self.pool, "message_attachment_files", {"id": message_id})

    async def release(self, message_ids: list[uuid.UUID]) -> None:
        await db.execute(self.pool, "release_claims", {"ids": message_ids, "worker": self.worker_id})

    async def mark_sent(self, message_id: uuid.UUID, provider_message_id: str) -> bool:
        return await self._sent.submit((message_id, provider_message_id))

    async def _sent_batch(self, items: list[tuple[uuid.UUID, str]]) -> list[bool]:
        params = {"ids": [i[0] for i in items], "provider_ids": [i[1] for i in items], "worker": self.worker_id}
        written = {r["id"] for r in await db.fetch_all(self.pool, "mark_sent_many", params)}
        return [message_id in written for message_id, _ in items]
