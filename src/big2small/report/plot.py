"""The rate-accuracy figure: one panel per (task, data, model), compression ratio (log scale) against the metric,
one line per compressor with seed error bars, the uncompressed model dashed, Pareto-optimal points ringed. With
`bits_axis`, the x axis is bits per weight instead: 32 / ratio, since every ratio is over fp32 bytes."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display (sweeps run on servers and in Hydra callbacks)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from big2small.files import write_atomically  # noqa: E402
from big2small.report.points import Panel, series_of  # noqa: E402

MARKERS = "osD^v<>pXh*"


def is_fraction_metric(panel: Panel) -> bool:
    """Accuracy, Dice, IoU... live in [0, 1]: shown in percent."""
    values = [panel.base_metric] + [p.metric for p in panel.points]
    return all(0.0 <= v <= 1.0 for v in values)


FP32_BITS = 32


def plot_rate_accuracy(panels: list[Panel], path: Path, ratio_label: str = "compression ratio",
                       bits_axis: bool = False) -> Path:
    fig, axes = plt.subplots(1, len(panels), figsize=(9.5 * len(panels), 5.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw_panel(ax, panel, ratio_label, bits_axis)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=130)
    plt.close(fig)
    return write_atomically(path, image.getvalue(), "the plot")


def x_values(points, bits_axis: bool) -> tuple[list[float], list[float]]:
    """Each point's x and its error: the ratio, or bits per weight 32 / ratio (its spread to first order)."""
    if not bits_axis:
        return [p.ratio for p in points], [p.ratio_std for p in points]
    return [FP32_BITS / p.ratio for p in points], [FP32_BITS * p.ratio_std / p.ratio ** 2 for p in points]


def _draw_panel(ax, panel: Panel, ratio_label: str, bits_axis: bool) -> None:
    scale = 100.0 if is_fraction_metric(panel) else 1.0
    unit = " (%)" if scale == 100.0 else ""
    colors = plt.get_cmap("tab10").colors
    for index, (name, points) in enumerate(series_of(panel).items()):
        data_note = " [uses data]" if points[0].uses_data else ""
        x, x_error = x_values(points, bits_axis)
        ax.errorbar(
            x, [scale * p.metric for p in points],
            yerr=[scale * p.metric_std for p in points], xerr=x_error,
            color=colors[index % len(colors)], marker=MARKERS[index % len(MARKERS)], markersize=5,
            capsize=3, linewidth=1.5, label=name + data_note,
        )
    pareto = [p for p in panel.points if p.pareto]
    ax.scatter(x_values(pareto, bits_axis)[0], [scale * p.metric for p in pareto], s=170, facecolors="none",
               edgecolors="black", linewidths=1.3, zorder=5, label="Pareto-optimal")
    base = scale * panel.base_metric
    ax.axhline(base, color="black", linestyle="--", linewidth=1.2,
               label=f"uncompressed ({base:.1f}{'%' if unit else ''})")
    if panel.base_metric_std > 0:  # base models trained per seed: show their spread too
        spread = scale * panel.base_metric_std
        ax.axhspan(base - spread, base + spread, color="grey", alpha=0.15, linewidth=0)

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}" if bits_axis else f"{x:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if bits_axis:
        ax.set_xlabel(f"bits per weight (32 / {ratio_label}, log scale)")
    else:
        ax.set_xlabel(f"{ratio_label} (original bytes / compressed bytes, log scale)")
    ax.set_ylabel(f"{panel.metric_name}{unit}")
    ax.set_title(panel.name)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    references = [i for i, label in enumerate(labels) if label == "Pareto-optimal" or label.startswith("uncompressed")]
    order = [i for i in range(len(labels)) if i not in references] + references  # curves first, references last
    # Outside the axes, right: curves can run through any corner of the plot.
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
