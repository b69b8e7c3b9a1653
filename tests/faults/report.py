"""The fault suite's figures table: one row per scenario, every cell measured in the run that prints it.

Each run writes ``.local/faults/latest.md``. ``python -m tests.faults.report publish`` (the last step of
``task faults``) copies it into ``bench/results/faults.md`` and into the README between its two markers.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LATEST = ROOT / ".local" / "faults" / "latest.md"
PUBLISHED = ROOT / "bench" / "results" / "faults.md"
README = ROOT / "README.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
COLUMNS = (
    "scenario",
    "load",
    "accepted",
    "ended SENT",
    "ended FAILED",
    "lost",
    "sent twice (counted / uncounted)",
    "5xx",
    "time to recover (all final)",
)


@dataclass(frozen=True)
class Figures:
    scenario: str
    load: str
    accepted: int
    sent: int
    failed: int
    lost: int
    twice: int  # messages the provider got more than once (their extra copies)
    counted: int  # what the workers' notify_worker_possible_resends_total says
    server_errors: int
    recover_s: float
    drained_s: float

    @property
    def uncounted(self) -> int:
        return max(0, self.twice - self.counted)

    def row(self) -> str:
        cells = (
            self.scenario,
            self.load,
            str(self.accepted),
            str(self.sent),
            str(self.failed),
            str(self.lost),
            f"{self.twice} ({self.counted} counted) / {self.uncounted}",
            str(self.server_errors),
            f"{self.recover_s:.1f} s ({self.drained_s:.1f} s)",
        )
        return "| " + " | ".join(cells) + " |"


@dataclass
class Report:
    fault_s: float
    rows: list[Figures] = field(default_factory=list)

    def add(self, figures: Figures) -> None:
        self.rows.append(figures)

    def markdown(self) -> str:
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        lines = [
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at {revision or 'an unknown revision'}, each fault"
            f" lasting {self.fault_s:g} s (`NOTIFY_FAULT_SECONDS={self.fault_s:g} pytest tests/faults`;"
            " `task faults` runs it with 30 s). Time to recover: from the fault's end to the first 202 and the"
            " first SENT after it; in brackets, to the last accepted message final.",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
            *(r.row() for r in self.rows),
        ]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        if self.rows:
            LATEST.parent.mkdir(parents=True, exist_ok=True)
            LATEST.write_text(self.markdown())


def publish() -> None:
    """Copy the last run's table into bench/results and the README."""
    table = LATEST.read_text()
    PUBLISHED.write_text(f"# Faults under load\n\n{table}")
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(f"{text[:start]}\n{table}{text[end:]}")
    print(f"published {LATEST} to {PUBLISHED} and README.md")


if __name__ == "__main__":
    if sys.argv[1:] != ["publish"]:
        sys.exit("usage: python -m tests.faults.report publish")
    publish()
