"""From jobs to curve points: jobs that differ only in their seed become one point (mean and spread), points of
one compressor (and the same non-ratio settings) form one curve, and each panel (task, data, model) gets the
uncompressed model's metric and its Pareto front.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from big2small.methods.budget import TOLERANCE as TARGET_TOLERANCE

RATIO_KEY = "compression_ratio"
# Overrides that move a point along its curve rather than start a new curve: the compressors' size knobs.
RATE_KNOBS = frozenset({"compressor.target_ratio", "compressor.bits", "compressor.sparsity", "compressor.rank_fraction",
                        "compressor.energy", "compressor.inr.width"})
# Overrides already told apart by the panel (task/data/model) or the compressor name, or averaged over (seed).
NOT_A_SETTING = frozenset({"seed", "task", "data", "model", "compressor", "experiment", "logger", "trainer",
                           "sweep.skip_done", "sweep.name"})
NOT_A_SETTING_GROUP = "paths."  # where a job writes its outputs and cache, not what it computes


@dataclass
class Point:
    panel: str
    series: str
    compressor: str
    uses_data: bool
    settings: str  # the point's own knob values, e.g. "target_ratio=4"
    seeds: int
    ratio: float
    ratio_std: float
    metric: float
    metric_std: float
    drop: float  # base minus compressed metric, mean over seeds
    pareto: bool = False


@dataclass
class Panel:
    name: str
    metric_name: str
    base_metric: float
    base_metric_std: float
    points: list[Point]


def panel_name(job: dict[str, Any]) -> str:
    return f"{job['model']} on {job['data']} ({job['task']})"


def build_panels(jobs: list[dict[str, Any]], ratio_key: str = RATIO_KEY) -> list[Panel]:
    varying = _varying_setting_keys(jobs)
    by_point: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for job in jobs:
        overrides = job.get("overrides", {})
        knobs = tuple((k, overrides[k]) for k in varying if k in overrides and _is_knob(k))
        # Only the job's own overrides name its curve (a key given to another compressor's jobs says nothing here).
        others = tuple((k, overrides[k]) for k in varying if k in overrides and not _is_knob(k))
        by_point[(panel_name(job), curve_name(job), others, knobs, job.get("target_ratio"))].append(job)

    panels: dict[str, list[Point]] = defaultdict(list)
    for (panel, compressor, others, knobs, target), group in by_point.items():
        knob_text = ", ".join(f"{_short(k)}={v}" for k, v in knobs) or (f"target_ratio={target}" if target else "")
        series = compressor + (" (" + ", ".join(f"{_short(k)}={v}" for k, v in others) + ")" if others else "")
        ratios = [float(j[ratio_key]) for j in group]
        metrics = [float(j["compressed_metric"]) for j in group]
        panels[panel].append(Point(
            panel=panel, series=series, compressor=compressor, uses_data=bool(group[0].get("uses_data")),
            settings=knob_text, seeds=len(group), ratio=statistics.fmean(ratios), ratio_std=_std(ratios),
            metric=statistics.fmean(metrics), metric_std=_std(metrics),
            drop=statistics.fmean(float(j["metric_drop"]) for j in group),
        ))

    result = []
    for name in sorted(panels):
        panel_jobs = [j for j in jobs if panel_name(j) == name]
        bases = [float(j["base_metric"]) for j in panel_jobs]
        points = sorted(panels[name], key=lambda p: (p.series, p.ratio))
        mark_pareto(points)
        result.append(Panel(name, panel_jobs[0]["metric_name"], statistics.fmean(bases), _std(bases), points))
    return result


def curve_name(job: dict[str, Any]) -> str:
    """The compressor config the job chose (`compressor=big2small_paper` and `compressor=big2small` are two
    curves of one class): recorded in its metrics, else in its overrides; else the compressor's name."""
    return job.get("compressor_config") or job.get("overrides", {}).get("compressor", job["compressor"])


def mark_pareto(points: list[Point]) -> None:
    """A point is Pareto-optimal when no other point has at least its ratio and its metric, one of them higher.

    Ratios within the target tolerance of each other count as equal (a compressor that lands at 8.1x for a
    target of 8 has not beaten one that landed at 8.0x), so only a higher metric can then dominate.
    """
    for p in points:
        p.pareto = not any(q is not p and _dominates(q, p) for q in points)


def _dominates(q: Point, p: Point) -> bool:
    ratio_at_least = q.ratio * (1 + TARGET_TOLERANCE) >= p.ratio
    ratio_higher = q.ratio > p.ratio * (1 + TARGET_TOLERANCE)
    return ratio_at_least and q.metric >= p.metric and (ratio_higher or q.metric > p.metric)


def series_of(panel: Panel) -> dict[str, list[Point]]:
    """The panel's curves, each sorted by ratio."""
    curves: dict[str, list[Point]] = defaultdict(list)
    for point in panel.points:
        curves[point.series].append(point)
    return {name: sorted(pts, key=lambda p: p.ratio) for name, pts in sorted(curves.items())}


def _varying_setting_keys(jobs: list[dict[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (constant overrides, e.g. a shortened run, name nothing)."""
    values: dict[str, set] = defaultdict(set)
    for job in jobs:
        for key in {k for j in jobs for k in j.get("overrides", {})}:
            values[key].add(job.get("overrides", {}).get(key))
    return sorted(k for k, v in values.items()
                  if len(v) > 1 and k not in NOT_A_SETTING and not k.startswith(NOT_A_SETTING_GROUP))


def _is_knob(key: str) -> bool:
    return key in RATE_KNOBS


def _short(key: str) -> str:
    """Labels: `compressor.outliers.enabled` -> `outliers.enabled`, `experiment/variant` -> `variant`."""
    return key.rsplit("/", 1)[-1].removeprefix("compressor.")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0
