"""What run and sweep dirs hold: which jobs finished (metrics.json complete), their scalars in summary.csv,
and the overrides that made each job. Used by the pipeline (sweep.skip_done) and by the report.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from big2small.files import write_atomically
from big2small.tracking import METRICS_FILE, scalar_items

log = logging.getLogger(__name__)
SUMMARY_FILE = "summary.csv"
# A metrics.json without these was not written by a finished job (write_metrics_json writes it last, whole).
COMPLETE_METRICS_KEYS = (
    "task", "data", "model", "compressor", "seed", "compression_ratio", "model_compression_ratio",
    "metric_name", "base_metric", "compressed_metric", "metric_drop",
)


def read_complete_metrics(job_dir: Path) -> dict[str, Any] | None:
    """The job's metrics.json if it exists, parses and holds every key a finished job writes; else None."""
    path = Path(job_dir) / METRICS_FILE
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(metrics, dict) or any(metrics.get(key) is None for key in COMPLETE_METRICS_KEYS):
        return None
    return metrics


def finished_job_metrics(job_dir: Path, cfg: DictConfig) -> dict[str, Any] | None:
    """For `sweep.skip_done`: the complete metrics of this job dir, if they belong to this job's config.

    A job dir is named by its overrides, so a complete metrics.json there is this job's result; the seed, model,
    data and checkpoint are compared as well so that a dir reused for a different job (numbered dirs of an edited
    sweep, or a checkpoint left out of the dir name) is run again rather than silently skipped.
    """
    metrics = read_complete_metrics(job_dir)
    if metrics is None:
        return None
    expected = {"seed": int(cfg.seed), "model": cfg.model.get("name"), "data": cfg.data.get("name")}
    if cfg.model.get("checkpoint"):
        expected["base_model_source"] = f"checkpoint:{cfg.model.checkpoint}"
    mismatched = {key: metrics.get(key) for key, value in expected.items() if metrics.get(key) != value}
    if mismatched:
        log.warning("%s holds results of another job (%s): running it again", job_dir, mismatched)
        return None
    return metrics


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job dir Hydra created under sweep_dir (it holds .hydra/overrides.yaml), finished or not."""
    return sorted((p.parent.parent for p in Path(sweep_dir).rglob(".hydra/overrides.yaml")), key=str)


def collect_job_metrics(sweep_dir: Path) -> list[dict[str, Any]]:
    """Scalars of every finished job under sweep_dir (a job without a complete metrics.json is left out)."""
    rows = []
    for path in sorted(Path(sweep_dir).rglob(METRICS_FILE), key=str):
        metrics = read_complete_metrics(path.parent)
        if metrics is None:
            log.warning("skipping %s: not a complete metrics.json", path)
            continue
        rows.append({"job_dir": str(path.parent.relative_to(sweep_dir)), **scalar_items(metrics)})
    return rows


def write_summary_csv(sweep_dir: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_atomically(Path(sweep_dir) / SUMMARY_FILE, text.getvalue().encode(), "the summary")


def read_overrides(job_dir: Path) -> dict[str, str]:
    """The command-line overrides Hydra recorded for a job, as {key: value} ('+' / '++' prefixes dropped)."""
    path = Path(job_dir) / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    overrides = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        overrides[key.lstrip("+~")] = value
    return overrides
