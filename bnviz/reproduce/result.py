"""A finished reproduction: its runs, claims and timings, as the report and the CLI read them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnviz.reproduce.registry import ClaimResult


@dataclass(frozen=True)
class Result:
    name: str
    out_dir: Path
    run_files: tuple[dict[str, Path], ...]  # per seed: norm -> run file
    seeds: tuple[dict[str, dict], ...]  # per seed: norm -> run file content, as read_run returns it
    run_seconds: tuple[dict[str, float], ...]  # per seed: norm -> training wall time, start-up included
    run_cpu_seconds: tuple[dict[str, float], ...]  # per seed: norm -> CPU time of the run's worker process, or thread
    claims: list[ClaimResult]
    train_seconds: float  # all runs, wall time
    report: Path
    summary: Path
    parallel: str
    workers: int
    differences: tuple[str, ...]  # how our setup differs from the source, in numbers

    @property
    def runs(self) -> dict[str, dict]:
        """The first seed's runs: the pair the report's figures draw."""
        return self.seeds[0]

    @property
    def all_runs(self) -> list[dict]:
        return [run for pair in self.seeds for run in pair.values()]

    @property
    def completed(self) -> bool:
        return all(run["status"] == "finished" for run in self.all_runs)

    @property
    def interrupted(self) -> bool:
        return any(run["status"] == "stopped" for run in self.all_runs)
