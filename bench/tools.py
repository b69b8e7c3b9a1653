"""Load generation with vegeta (built from the Go module proxy into .local/bin on first use)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.status_codes.items() if not code.startswith("2"))


def attack(
    targets: list[Target], *, duration_s: float, rate: float = 0, workers: int = 32, timeout_s: float = 10
) -> AttackResult:
    """rate 0: as fast as ``workers`` concurrent connections go (the maximum); else a constant open-loop rate."""
    with tempfile.NamedTemporaryFile("w", suffix=".targets", delete=False) as handle:
        handle.write("\n".join(t.line() for t in targets) + "\n")
    args = [
        vegeta(),
        "attack",
        "-format=json",
        f"-targets={handle.name}",
        f"-duration={duration_s}s",
        f"-timeout={timeout_s}s",
        "-keepalive=true",
        f"-rate={rate:.0f}/s" if rate else "-rate=0",
    ]
    if rate:
        args += [f"-workers={workers}", f"-max-workers={workers * 8}"]
    else:
        args += [f"-workers={workers}", f"-max-workers={workers}"]
    attack_run = subprocess.run(args, check=True, capture_output=True)
    report = subprocess.run(
        [vegeta(), "report", "-type=json"], input=attack_run.stdout, check=True, capture_output=True
    )
    os.unlink(handle.name)
    data: dict[str, Any] = json.loads(report.stdout)
    return AttackResult(
        requests=data["requests"],
        throughput=data["throughput"],
        success=data["success"],
        p50_ms=data["latencies"]["50th"] / 1e6,
        p99_ms=data["latencies"]["99th"] / 1e6,
        status_codes={str(k): v for k, v in (data.get("status_codes") or {}).items()},
        # vegeta lists an HTTP error status ("429 Too Many Requests") among its errors too: those are answers
        errors=tuple(e for e in data.get("errors") or () if not re.match(r"\d{3} ", e)),
    )
