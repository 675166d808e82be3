"""One aggregate W&B run per sweep (job_type "aggregate", same group as the jobs): a table of every job, per panel
a line chart (ratio vs metric, one line per compressor), a scatter of the points, and the report's PNG."""

from __future__ import annotations

import re
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from big2small.report import Report
from big2small.report.points import Panel, series_of


def log_aggregate_run(report: Report, logger_cfg: DictConfig, sweep_name: str | None = None) -> Path:
    """Log the aggregate run into <sweep_dir>/wandb (offline unless WANDB_MODE says otherwise); returns its dir."""
    import wandb

    tracker = instantiate(logger_cfg)  # the jobs' own W&B settings (project, entity, mode, group), validated
    sweep_dir = report.results.sweep_dir
    group = tracker.group or sweep_name or sweep_dir.name
    run = tracker.open_run(
        group=group, job_type="aggregate", name=f"{group}-aggregate", run_dir=sweep_dir,
        tags=sorted({*tracker.tags, *(j["model"] for j in report.results.jobs), *(j["task"] for j in report.results.jobs)}),
        config={"sweep_dir": str(sweep_dir), "jobs": len(report.results.jobs),
                "unfinished_jobs": len(report.results.unfinished)},
    )
    try:
        run.log({"jobs": jobs_table(report)})
        for panel in report.panels:
            _log_panel(run, panel)
        run.log({"rate_accuracy_plot": wandb.Image(str(report.plot_png))})
        run.summary["finished_jobs"] = len(report.results.jobs)
        run.summary["unfinished_jobs"] = len(report.results.unfinished)
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir


def jobs_table(report: Report):
    import wandb

    rows = [{k: v for k, v in job.items() if k != "overrides"} for job in report.results.jobs]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    return wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows], allow_mixed_types=True)


def _log_panel(run, panel: Panel) -> None:
    import wandb

    key = re.sub(r"[^A-Za-z0-9_]+", "_", panel.name).strip("_")
    curves = series_of(panel)
    title = f"{panel.name}: {panel.metric_name} vs compression ratio"
    points = wandb.Table(
        columns=["series", "compressor", "settings", "compression_ratio", panel.metric_name, "std", "seeds",
                 "pareto", "uses_data"],
        data=[[p.series, p.compressor, p.settings, p.ratio, p.metric, p.metric_std, p.seeds, p.pareto, p.uses_data]
              for p in panel.points],
    )
    run.log({
        f"{key}/points": points,
        f"{key}/line": wandb.plot.line_series(
            xs=[[p.ratio for p in pts] for pts in curves.values()],
            ys=[[p.metric for p in pts] for pts in curves.values()],
            keys=list(curves), title=title, xname="compression ratio",
        ),
        f"{key}/scatter": wandb.plot.scatter(points, "compression_ratio", panel.metric_name, title=title),
    })
    run.summary[f"{key}/uncompressed_{panel.metric_name}"] = panel.base_metric
