"""What every benchmark needs: a fresh database, its own topics, child servers, a results table."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from lib.adapters.kafka import drop_topics, ensure_topics
from lib.adapters.migrate import migrate
from lib.common.settings import KafkaSettings

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("NOTIFY_BENCH_PG", "postgresql://notify:notify@127.0.0.1:55432/notify")
KAFKA_BOOTSTRAP = os.environ.get("NOTIFY_BENCH_KAFKA", "127.0.0.1:9092")
LOG_DIR = ROOT / ".local" / "log" / "bench"


def free_port() -> int:
    """A loopback port nobody listens on right now (the benchmarks' and the tests' child servers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fresh_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(PG_ADMIN_DSN, dbname=name)
    migrate(dsn)
    return dsn


def fresh_topics(partitions: int = 6) -> KafkaSettings:
    """Topics of the benchmark's own, deleted when it exits."""
    kafka = KafkaSettings(bootstrap_servers=KAFKA_BOOTSTRAP, topic_prefix=f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(kafka, partitions=partitions)
    atexit.register(drop_topics, kafka)
    return kafka


class Child:
    """A server child process, waited for until its health URL answers."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], health_url: str) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log = (LOG_DIR / f"{name}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {LOG_DIR / name}.log")
            try:
                httpx.get(health_url, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start; see {LOG_DIR / name}.log") from None
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@dataclass
class Report:
    title: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)

    def add(self, name: str, value: str, baseline: str = "", verdict: str = "") -> None:
        self.rows.append((name, value, baseline, verdict))
        print(f"  {name:<58} {value:>22}  {baseline:<40} {verdict}", flush=True)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| figure | measured | against | target |", "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines) + "\n"


def verdict(ok: bool, text: str) -> str:
    return f"{'met' if ok else 'MISSED'} ({text})"
