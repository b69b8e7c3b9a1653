"""Process set-up shared by the deployables: structured JSON logs (one object per line, with the ``extra``
fields: message_id, site_id, ...) and garbage-collector tuning."""

from __future__ import annotations

import gc
import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# kopf attaches its whole settings object and a flag of its own to every record about a resource.
_STANDARD |= {"settings", "k8s_skip"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own loggers go through the same JSON handler; its access log is off (we count requests).
    # httpx logs every request at INFO: the workers make thousands; their own log lines say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def tune_gc() -> None:
    """Call once start-up is done. Everything alive then lives as long as the process: keep the collector
    from rescanning it, and collect the young generation less often (fewer, shorter pauses in the tail)."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
