"""A finished reproduction: its runs, claims and timings, as the report and the CLI read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnviz.reproduce.registry import ClaimResult


@dataclass(frozen=True)
class Result:
    name: str
    out_dir: Path
    run_files: dict[str, Path]  # norm -> run file
    runs: dict[str, dict]  # norm -> run file content, as read_run returns it
    run_seconds: dict[str, float]  # norm -> training wall time, start-up included
    run_cpu_seconds: dict[str, float]  # norm -> CPU time of the run's worker process, or thread
    claims: list[ClaimResult]
    train_seconds: float  # all runs, wall time
    report: Path
    summary: Path
    parallel: str
    workers: int
    differences: tuple[str, ...]  # how our setup differs from the source, in numbers

    @property
    def completed(self) -> bool:
        return all(run["status"] == "finished" for run in self.runs.values())

    @property
    def interrupted(self) -> bool:
        return any(run["status"] == "stopped" for run in self.runs.values())
