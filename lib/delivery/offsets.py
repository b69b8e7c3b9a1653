"""Which offsets may be committed: an offset is committed only when every record before it in its partition is
finished, so a crash or a rebalance re-delivers exactly what was not."""

from __future__ import annotations

TP = tuple[str, int]


class OffsetTracker:
    """Per partition: offsets in flight and the next offset after the highest seen."""

    def __init__(self) -> None:
        self._in_flight: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def started(self, tp: TP, offset: int) -> None:
        self._in_flight.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finished(self, tp: TP, offset: int) -> None:
        if tp in self._in_flight:
            self._in_flight[tp].discard(offset)

    def committable(self, only: set[TP] | None = None) -> dict[TP, int]:
        """Offsets worth committing now: below the oldest unfinished record, changed since the last commit."""
        found = {}
        for tp, next_offset in self._next.items():
            if only is not None and tp not in only:
                continue
            pending = self._in_flight.get(tp)
            offset = min(pending) if pending else next_offset
            if self._committed.get(tp) != offset:
                found[tp] = offset
        return found

    def committed(self, offsets: dict[TP, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self._in_flight.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
