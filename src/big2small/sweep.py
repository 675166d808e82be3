"""End of a multirun: collect every job's metrics.json into summary.csv at the sweep root."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from big2small.tracking import METRICS_FILE, scalar_items

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.csv"


def collect_job_metrics(sweep_dir: Path) -> list[dict[str, Any]]:
    """Scalars of every finished job under sweep_dir (a job without a readable metrics.json is skipped)."""
    rows = []
    for path in sorted(Path(sweep_dir).rglob(METRICS_FILE), key=lambda p: str(p)):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            log.warning("skipping %s: %s", path, error)
            continue
        rows.append({"job_dir": str(path.parent.relative_to(sweep_dir)), **scalar_items(metrics)})
    return rows


def write_summary_csv(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    path = Path(sweep_dir) / SUMMARY_FILE
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


class SweepSummaryCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = collect_job_metrics(sweep_dir)
        if not rows:
            log.warning("no finished jobs under %s: no summary written", sweep_dir)
            return
        path = write_summary_csv(sweep_dir, rows)
        print(f"sweep summary: {path} ({len(rows)} jobs)", flush=True)
