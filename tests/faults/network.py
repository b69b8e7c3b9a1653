"""The fault suite's test host: a network namespace for the workers, joined to this machine by one veth pair per
dependency (Kafka, PostgreSQL, the providers), so a test can cut a worker off from one of them by taking that
link down, without killing it. Made by the test, removed after it; addresses are on the links it makes."""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass

LINKS = ("kafka", "pg", "rest")  # "rest": the providers (the sandbox) and the workers' own health ports


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Link:
    """One veth pair: ``host_ip`` on this machine's end, ``ns_ip`` inside the namespace (a /30 of its own)."""

    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str


class TestHost:
    """A namespace with a link per name in ``LINKS``; ``down``/``up`` cut and restore one of them."""

    def __init__(self) -> None:
        tag = f"{random.randrange(16**4):04x}"
        self.namespace = f"notify-faults-{tag}"
        block = random.randrange(60) * 4  # three /30s of 10.213.0.0/16 for this run, picked so two runs differ
        self.links = {
            name: Link(f"nf{tag}{name[0]}h", f"nf{tag}{name[0]}w", f"10.213.{block + i}.1", f"10.213.{block + i}.2")
            for i, name in enumerate(LINKS)
        }

    @property
    def prefix(self) -> tuple[str, ...]:
        """The command prefix that runs a process inside the namespace."""
        return ("ip", "netns", "exec", self.namespace)

    def create(self) -> TestHost:
        _ip("netns", "add", self.namespace)
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        for link in self.links.values():
            _ip("link", "add", link.host_if, "type", "veth", "peer", "name", link.ns_if, "netns", self.namespace)
            _ip("addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
            _ip("link", "set", link.host_if, "up")
            _ip("-n", self.namespace, "addr", "add", f"{link.ns_ip}/30", "dev", link.ns_if)
            _ip("-n", self.namespace, "link", "set", link.ns_if, "up")
        return self

    def down(self, name: str) -> None:
        _ip("link", "set", self.links[name].host_if, "down")

    def up(self, name: str) -> None:
        _ip("link", "set", self.links[name].host_if, "up")

    def destroy(self) -> None:
        for link in self.links.values():  # deleting one end deletes the pair
            subprocess.run(["ip", "link", "del", link.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
