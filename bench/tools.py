"""Load generation with vegeta (built from the Go module proxy into .local/bin on first use)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".local" / "bin"
VEGETA_MODULE = "github.com/tsenart/vegeta/v12@v12.12.0"


def vegeta() -> str:
    path = BIN / "vegeta"
    if not path.exists():
        BIN.mkdir(parents=True, exist_ok=True)
        go = shutil.which("go") or "/usr/local/go/bin/go"
        subprocess.run([go, "install", VEGETA_MODULE], check=True, env={**os.environ, "GOBIN": str(BIN)})
    return str(path)


@dataclass(frozen=True)
class Target:
    method: str
    url: str
    body: bytes = b""
    headers: dict[str, str] | None = None

    def line(self) -> str:
        header = {k: [v] for k, v in (self.headers or {}).items()}
        return json.dumps(
            {"method": self.method, "url": self.url, "header": header, "body": base64.b64encode(self.body).decode()}
        )


@dataclass(frozen=True)
class AttackResult:
    requests: int
    throughput: float  # successful responses per second
    success: float
    p50_ms: float
    p99_ms: float
    status_codes: dict[str, int]
    # vegeta's distinct transport errors: requests that got no HTTP answer (status code "0")
    errors: tuple[str, ...] = ()
    # the p99 of the whole run, warm-up included: printed beside the figure, never in its place
    p99_with_warmup_ms: float = 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.status_codes.items() if not code.startswith("2"))


@dataclass(frozen=True)
class _Sample:
    sent_ns: int
    code: str
    latency_ns: int
    error: str


# Every attack starts with this many seconds that are not counted: vegeta opens its connections on the first
# requests, and a run of 8 s that begins with 100 fresh connections puts their handshakes in its p99 (measured:
# 400-800 of 42,000 requests over 25 ms, all in the first 0.5 s). The run then lasts its full duration after it.
WARMUP_S = 1.0


def _percentile(sorted_values: list[int], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6 if sorted_values else 0.0


def _summary(samples: list[_Sample], warmup_s: float) -> AttackResult:
    """The counted part of a run: the requests sent after the warm-up, and their rate until the last answer."""
    first = min(s.sent_ns for s in samples)
    counted = [s for s in samples if s.sent_ns >= first + warmup_s * 1e9] or samples
    begin = min(s.sent_ns for s in counted)
    end = max(s.sent_ns + s.latency_ns for s in counted)
    ok = sum(1 for s in counted if s.code.startswith("2"))
    codes: dict[str, int] = {}
    for s in counted:
        codes[s.code] = codes.get(s.code, 0) + 1
    latencies = sorted(s.latency_ns for s in counted)
    return AttackResult(
        requests=len(counted),
        throughput=ok / max((end - begin) / 1e9, 1e-9),
        success=ok / len(counted),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        status_codes=codes,
        # an HTTP error status ("429 Too Many Requests") is listed among the errors too: those are answers
        errors=tuple(sorted({s.error for s in counted if s.error and not re.match(r"\d{3} ", s.error)})),
        p99_with_warmup_ms=_percentile(sorted(s.latency_ns for s in samples), 0.99),
    )


def attack(
    targets: list[Target],
    *,
    duration_s: float,
    rate: float = 0,
    workers: int = 32,
    timeout_s: float = 10,
    warmup_s: float = WARMUP_S,
) -> AttackResult:
    """rate 0: as fast as ``workers`` concurrent connections go (the maximum); else a constant open-loop rate.
    The run lasts ``warmup_s + duration_s``; the figures are those of the last ``duration_s``."""
    with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as handle:
        handle.write("\n".join(t.line() for t in targets) + "\n")
    args = [
        vegeta(),
        "attack",
        "-format=json",
        f"-targets={handle.name}",
        f"-duration={warmup_s + duration_s}s",
        f"-timeout={timeout_s}s",
        "-keepalive=true",
        f"-rate={rate:.0f}/s" if rate else "-rate=0",
    ]
    if rate:
        args += [f"-workers={workers}", f"-max-workers={workers * 8}"]
    else:
        args += [f"-workers={workers}", f"-max-workers={workers}"]
    attack_run = subprocess.run(args, check=True, capture_output=True)
    encoded = subprocess.run(
        [vegeta(), "encode", "--to", "csv"], input=attack_run.stdout, check=True, capture_output=True
    )
    os.unlink(handle.name)
    samples = [
        _Sample(int(row[0]), row[1], int(row[2]), row[5]) for row in csv.reader(io.StringIO(encoded.stdout.decode()))
    ]
    return _summary(samples, warmup_s)
