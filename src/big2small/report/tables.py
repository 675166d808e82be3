"""report.md: per panel (task, data, model), one row per curve: the best metric reached at ratio >= 2, 4, 8, 16
(and 32, 64 where some point of the panel reaches them), and the largest ratio whose metric stays within
`tolerance` of the uncompressed model."""

from __future__ import annotations

from pathlib import Path

from big2small.files import write_atomically
from big2small.report.plot import is_fraction_metric
from big2small.report.points import Panel, Point, series_of

RATIO_THRESHOLDS = (2, 4, 8, 16)
HIGH_RATIO_THRESHOLDS = (32, 64)  # columns shown only where some point of the panel reaches them


def thresholds_of(panel: Panel) -> tuple[int, ...]:
    return RATIO_THRESHOLDS + tuple(t for t in HIGH_RATIO_THRESHOLDS if any(p.ratio >= t for p in panel.points))


def best_metric_at(points: list[Point], min_ratio: float) -> Point | None:
    """The point with the highest metric among those compressing at least `min_ratio`."""
    candidates = [p for p in points if p.ratio >= min_ratio]
    return max(candidates, key=lambda p: p.metric) if candidates else None


def largest_ratio_within(points: list[Point], tolerance: float) -> Point | None:
    """The most compressed point whose mean metric drop (over seeds) is at most `tolerance`."""
    candidates = [p for p in points if p.drop <= tolerance]
    return max(candidates, key=lambda p: p.ratio) if candidates else None


def default_tolerance(panel: Panel) -> float:
    """One point: 0.01 for a metric in [0, 1] (shown in %), 1.0 otherwise."""
    return 0.01 if is_fraction_metric(panel) else 1.0


def panel_table(panel: Panel, tolerance: float | None = None) -> str:
    tolerance = default_tolerance(panel) if tolerance is None else tolerance
    percent = is_fraction_metric(panel)
    fmt = (lambda v: f"{100 * v:.1f} %") if percent else (lambda v: f"{v:.4g}")
    tol_text = f"{100 * tolerance:g} point" if percent else f"{tolerance:g}"
    thresholds = thresholds_of(panel)
    lines = [
        f"### {panel.name}",
        "",
        f"Uncompressed {panel.metric_name}: {fmt(panel.base_metric)}"
        + (f" ± {fmt(panel.base_metric_std)}" if panel.base_metric_std > 0 else ""),
        "",
        "| compressor | uses data | " + " | ".join(f"best at ≥ {r}×" for r in thresholds)
        + f" | largest ratio within {tol_text} | points × seeds |",
        "|---|---|" + "---|" * len(thresholds) + "---|---|",
    ]
    for name, points in series_of(panel).items():
        cells = []
        for threshold in thresholds:
            best = best_metric_at(points, threshold)
            cells.append("–" if best is None else f"{fmt(best.metric)}{_spread(best, fmt)} ({best.ratio:.1f}×)")
        within = largest_ratio_within(points, tolerance)
        cells.append("–" if within is None else f"{within.ratio:.1f}× ({fmt(within.metric)})")
        seeds = sorted({p.seeds for p in points})
        cells.append(f"{len(points)} × {'/'.join(map(str, seeds))}")
        uses_data = "yes" if points[0].uses_data else "no"
        lines.append(f"| {name} | {uses_data} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report_md(panels: list[Panel], path: Path, *, sweep_dir: Path, jobs: int, unfinished: list[str],
                    plot_file: str, ratio_key: str, tolerance: float | None = None) -> Path:
    parts = [
        f"# Rate-accuracy report: {sweep_dir.name}",
        "",
        f"{jobs} finished jobs from `{sweep_dir}`. Ratio = `{ratio_key}` (measured artifact bytes); metric = mean "
        "over seeds (± standard deviation where a point has several seeds), on the same test images for the "
        "uncompressed and the rebuilt model.",
        "",
    ]
    if unfinished:
        parts += [f"**Incomplete sweep:** {len(unfinished)} job(s) have no complete metrics.json (unfinished or "
                  "failed) and are left out: " + ", ".join(f"`{d}`" for d in unfinished), ""]
    parts += [f"![rate-accuracy plot]({plot_file})", ""]
    for panel in panels:
        parts.append(panel_table(panel, tolerance))
    return write_atomically(path, "\n".join(parts).encode(), "the report")


def _spread(point: Point, fmt) -> str:
    return f" ± {fmt(point.metric_std).removesuffix(' %')}" if point.seeds > 1 else ""
