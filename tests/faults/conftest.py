"""The fault suite's own infrastructure, which its tests stop, kill and cut off:

- a Kafka broker and a PostgreSQL server of its own, started by the same scripts as the main ones
  (``scripts/kafka.sh``, ``scripts/pg.sh``) on other ports; PostgreSQL durable, as production runs it;
- a test host (``tests.faults.network``): the workers run in a network namespace joined to this machine by one
  link per dependency, so a test can take the link to Kafka or to PostgreSQL down without killing anything;
- the sandbox providers on the third link, and the API on loopback.

``NOTIFY_FAULT_SECONDS`` sets how long each fault lasts (10 s in ``scripts/test.sh``, 30 s in ``task faults``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.common import free_port
from lib.adapters.migrate import migrate
from tests.conftest import drop_database
from tests.e2e.conftest import SENDGRID_KEY, WASENDER_KEY, Placement, Stack
from tests.faults.network import TestHost
from tests.faults.report import Report
from tests.processes import Deployable

ROOT = Path(__file__).resolve().parents[2]
FAULT_SECONDS = float(os.environ.get("NOTIFY_FAULT_SECONDS", "10"))
KAFKA_NAME = "kafka-faults"
PG_NAME = "pg-faults"


def _script(name: str, action: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), action], env={**os.environ, **env}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{name} {action} failed:\n{done.stderr[-3000:]}")


def _pid_from(path: Path) -> int:
    return int(path.read_text().split()[0])


@dataclass
class Infra:
    host: TestHost
    kafka_port: int
    kafka_controller_port: int
    kafka_workers_port: int  # Kafka refuses two IPv4 listeners on one port, even on two addresses
    pg_port: int
    database: str = ""

    # --- Kafka ----------------------------------------------------------------------------------------------

    @property
    def kafka_env(self) -> dict[str, str]:
        return {
            "KAFKA_NAME": KAFKA_NAME,
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "KAFKA_EXTRA_LISTENER": self.kafka_for_workers,
        }

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def kafka_for_workers(self) -> str:
        """The broker's second listener, on the workers' link."""
        return f"{self.host.links['kafka'].host_ip}:{self.kafka_workers_port}"

    def kafka(self, action: str) -> None:
        _script("kafka.sh", action, self.kafka_env)

    def kill_kafka(self) -> None:
        os.kill(_pid_from(ROOT / ".local" / "run" / f"{KAFKA_NAME}.pid"), signal.SIGKILL)

    # --- PostgreSQL -----------------------------------------------------------------------------------------

    @property
    def pg_env(self) -> dict[str, str]:
        return {
            "PG_NAME": PG_NAME,
            "PG_PORT": str(self.pg_port),
            "PG_EXTRA_LISTEN": self.host.links["pg"].host_ip,
            "PG_DURABLE": "1",
        }

    def pg_url(self, address: str = "127.0.0.1", database: str | None = None) -> str:
        return f"postgresql://notify:notify@{address}:{self.pg_port}/{database or self.database}"

    @property
    def pg_url_for_workers(self) -> str:
        return self.pg_url(self.host.links["pg"].host_ip)

    def pg(self, action: str) -> None:
        if action != "start":
            _script("pg.sh", action, self.pg_env)
            return
        # After a kill, the server's children may still hold its shared memory for a moment.
        deadline = time.monotonic() + 30
        while True:
            try:
                _script("pg.sh", "start", self.pg_env)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def kill_pg(self) -> None:
        os.kill(_pid_from(ROOT / ".local" / PG_NAME / "data" / "postmaster.pid"), signal.SIGKILL)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    if os.geteuid() != 0:
        pytest.fail("the fault suite makes a network namespace: it runs as root (as CI does)")
    host = TestHost().create()
    found = Infra(host, free_port(), free_port(), free_port(), free_port())
    try:
        for instance in ("kafka.sh", "pg.sh"):  # one left running by an interrupted run is on other ports
            _script(instance, "stop", found.kafka_env if instance == "kafka.sh" else found.pg_env)
        found.kafka("start")
        found.pg("start")
        found.database = f"faults_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(found.pg_url(database="notify"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{found.database}"')
        migrate(found.pg_url())
        yield found
    finally:

        def drop() -> None:
            if found.database:
                drop_database(found.database, found.pg_url(database="notify"))

        for stop in (drop, lambda: found.kafka("stop"), lambda: found.pg("stop"), host.destroy):
            try:
                stop()
            except (RuntimeError, psycopg.Error) as exc:  # each step is tried: nothing is left running
                print(exc)


@pytest.fixture(scope="session")
def fault_sandbox(infra: Infra) -> Iterator[str]:
    address = infra.host.links["rest"].host_ip
    port = free_port()
    env = {
        "SANDBOX_HOST": address,
        "SANDBOX_PORT": str(port),
        "SANDBOX_SENDGRID_API_KEY": SENDGRID_KEY,
        "SANDBOX_WASENDER_API_KEY": WASENDER_KEY,
        "LOG_LEVEL": "WARNING",
    }
    url = f"http://{address}:{port}"
    proc = Deployable("sandbox-faults", "functions.sandbox", env, f"{url}/healthz").start()
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    found = Report(FAULT_SECONDS)
    yield found
    found.write()


@pytest.fixture
def fault_stack(infra: Infra, fault_sandbox: str) -> Iterator[Stack]:
    httpx.delete(f"{fault_sandbox}/_sandbox/messages")
    for provider in ("sendgrid", "wasender"):
        httpx.delete(f"{fault_sandbox}/_sandbox/faults/{provider}")
    placement = Placement(
        prefix=infra.host.prefix,
        database_url=infra.pg_url_for_workers,
        kafka_bootstrap=infra.kafka_for_workers,
        host=infra.host.links["rest"].ns_ip,
    )
    built = Stack(
        infra.pg_url(),
        fault_sandbox,
        kafka_bootstrap=infra.kafka_bootstrap,
        api_env={"STUCK_PENDING_AFTER_SECONDS": "5", "LOG_LEVEL": "WARNING"},
        placement=placement,
    )
    yield built
    built.close()
