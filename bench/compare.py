"""``bench compare --rev REV``: /send's closed-loop maximum, the code at REV against the work tree, interleaved.

A refactoring must keep the figures; single runs on this machine swing by more than a refactoring's effect, and
so do two processes of the same code (up to 20%). So each of ``--pairs`` pairs starts one fresh API process of
each side (the order alternating), on the same database and topics, and runs them in turn ``ROUNDS`` times; the
figure is the median of every pair's now / before ratio.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.api import ADMIN, EMAIL, _register, _send_targets
from bench.common import ROOT, Report, free_port, fresh_database, fresh_topics
from bench.tools import Target, attack

SITES = 20
CONNECTIONS = 128
ROUNDS = 2


class _Api:
    def __init__(self, tree: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {**os.environ, **env, "API_PORT": str(self.port), "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "functions.api"],
            cwd=tree,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the API of {tree} did not start") from None
                time.sleep(0.2)

    def targets(self) -> list[Target]:
        keys = [site["api_key"] for site in _register(self.url, SITES)]
        for key in keys:  # each key verified once: the runs measure cached keys, as in production
            httpx.post(f"{self.url}/api/v1/notifications/send", json=EMAIL, headers={"X-Site-Key": key}, timeout=30)
        return _send_targets(self.url, keys)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=40)


def run(duration_s: float, rev: str, pairs: int = 2) -> Report:
    report = Report(f"/send's closed-loop maximum: the work tree against {rev}, interleaved")
    dsn = fresh_database("notify_bench_compare")
    kafka = fresh_topics()
    env = {
        "DATABASE_URL": dsn,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "NOTIFY_TOPIC_PREFIX": kafka.topic_prefix,
        "NOTIFY_ADMIN_TOKEN": ADMIN,
        "STUCK_PENDING_AFTER_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory(prefix="notify-compare-") as scratch:
        before_tree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before_tree), rev], cwd=ROOT, check=True)
        try:
            ratios = []
            for pair in range(pairs):
                trees = {"before": before_tree, "now": ROOT}
                order = ["before", "now"] if pair % 2 == 0 else ["now", "before"]
                apis = {name: _Api(trees[name], env) for name in order}
                try:
                    targets = {name: api.targets() for name, api in apis.items()}
                    rates: dict[str, list[float]] = {"before": [], "now": []}
                    for round_ in range(ROUNDS):
                        for name in order if round_ % 2 == 0 else order[::-1]:
                            result = attack(targets[name], duration_s=duration_s, workers=CONNECTIONS)
                            rates[name].append(result.throughput)
                finally:
                    for api in apis.values():
                        api.stop()
                before, now = statistics.median(rates["before"]), statistics.median(rates["now"])
                ratios.append(now / before)
                report.add(
                    f"pair {pair + 1} (started {' then '.join(order)}): /send max, req/s",
                    f"{now:.0f}",
                    f"{now / before:.2f} x {before:.0f} at {rev}",
                )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before_tree)], cwd=ROOT, check=False)
    median = statistics.median(ratios)
    report.add("median of the pairs' now / before", f"{median:.2f}", f"{pairs} pairs, {ROUNDS} runs each side")
    return report
