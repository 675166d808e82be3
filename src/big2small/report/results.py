"""Read a sweep dir: the finished jobs (complete metrics.json plus the overrides that made them) and the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from big2small.runs import collect_job_metrics, job_dirs, read_overrides


class ReportError(ValueError):
    """The sweep dir cannot give a report (missing, or no finished job); the message says which."""


@dataclass
class SweepResults:
    sweep_dir: Path
    jobs: list[dict[str, Any]]  # one per finished job: metrics.json scalars, job_dir, overrides {key: value}
    unfinished: list[str] = field(default_factory=list)  # job dirs without a complete metrics.json


def load_sweep(sweep_dir: str | Path) -> SweepResults:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir}: no such directory (give the sweep dir of a multirun)")
    jobs = collect_job_metrics(sweep_dir)
    for job in jobs:
        job["overrides"] = read_overrides(sweep_dir / job["job_dir"])
    finished = {job["job_dir"] for job in jobs}
    unfinished = [str(d.relative_to(sweep_dir)) for d in job_dirs(sweep_dir)]
    unfinished = [d for d in unfinished if d not in finished]
    if not jobs:
        what = f"{len(unfinished)} job dirs, none" if unfinished else "no job dirs and"
        raise ReportError(f"{sweep_dir}: {what} with a complete metrics.json: nothing to report yet")
    return SweepResults(sweep_dir, jobs, unfinished)

