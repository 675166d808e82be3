"""Sweep dir -> summary.csv (one row per job), rate_accuracy.png and report.md, all written into the sweep dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from big2small.report.plot import plot_rate_accuracy
from big2small.report.points import RATIO_KEY, Panel, build_panels
from big2small.report.results import ReportError, SweepResults, load_sweep
from big2small.report.tables import write_report_md
from big2small.runs import write_summary_csv

PLOT_FILE = "rate_accuracy.png"
REPORT_FILE = "report.md"
RATIO_KEYS = ("compression_ratio", "model_compression_ratio")
X_AXES = ("ratio", "bits")  # the plot's x axis: the ratio, or bits per weight (32 / ratio)


@dataclass
class Report:
    results: SweepResults
    panels: list[Panel]
    summary_csv: Path
    plot_png: Path
    report_md: Path

    def describe(self) -> str:
        lines = [f"report from {len(self.results.jobs)} finished jobs: {self.plot_png}, {self.report_md}, "
                 f"{self.summary_csv}"]
        if self.results.unfinished:
            lines.append(f"incomplete sweep: {len(self.results.unfinished)} job(s) without a complete metrics.json "
                         f"left out: {', '.join(self.results.unfinished)}")
        return "\n".join(lines)


def make_report(sweep_dir: str | Path, ratio_key: str = RATIO_KEY, tolerance: float | None = None,
                x_axis: str = "ratio") -> Report:
    """Raises ReportError when the dir is missing or no job has finished; reports the finished ones otherwise."""
    if ratio_key not in RATIO_KEYS:
        raise ReportError(f"ratio must be one of {', '.join(RATIO_KEYS)} (got {ratio_key!r})")
    if x_axis not in X_AXES:
        raise ReportError(f"x axis must be one of {', '.join(X_AXES)} (got {x_axis!r})")
    if tolerance is not None and not tolerance >= 0:
        raise ReportError(f"tolerance must be >= 0 (got {tolerance})")
    results = load_sweep(sweep_dir)
    sweep_dir = results.sweep_dir
    summary = write_summary_csv(sweep_dir, [{k: v for k, v in j.items() if k != "overrides"} for j in results.jobs])
    panels = build_panels(results.jobs, ratio_key)
    label = "compression ratio" if ratio_key == RATIO_KEY else "whole-model compression ratio"
    plot = plot_rate_accuracy(panels, sweep_dir / PLOT_FILE, ratio_label=label, bits_axis=x_axis == "bits")
    report = write_report_md(panels, sweep_dir / REPORT_FILE, sweep_dir=sweep_dir, jobs=len(results.jobs),
                             unfinished=results.unfinished, plot_file=PLOT_FILE, ratio_key=ratio_key,
                             tolerance=tolerance)
    return Report(results, panels, summary, plot, report)
