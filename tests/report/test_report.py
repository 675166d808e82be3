"""make_report and src/report.py: files written into the sweep dir, tables, and clear messages on bad input."""

import csv
import dataclasses
import sys
from pathlib import Path

import matplotlib.image
import pytest

from big2small.report import PLOT_FILE, REPORT_FILE, make_report
from big2small.report.results import ReportError
from big2small.runs import SUMMARY_FILE
from tests.conftest import PROJECT_ROOT
from tests.once import once_per_run
from tests.report.fake_sweep import rate_sweep, write_job, write_unfinished_job
from tests.warm_cli import Result, run_many

REPORT_CLI = [sys.executable, str(PROJECT_ROOT / "src" / "report.py")]


def _table_row(markdown: str, compressor: str) -> list[str]:
    (line,) = [row for row in markdown.splitlines() if row.startswith(f"| {compressor} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_writes_png_markdown_and_summary(tmp_path):
    report = make_report(rate_sweep(tmp_path))
    image = matplotlib.image.imread(tmp_path / PLOT_FILE)
    assert image.shape[0] > 300 and image.shape[1] > 500
    with open(tmp_path / SUMMARY_FILE) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8 and {r["compressor"] for r in rows} == {"quant", "magnitude"}
    markdown = (tmp_path / REPORT_FILE).read_text()
    assert f"![rate-accuracy plot]({PLOT_FILE})" in markdown
    assert "Uncompressed accuracy: 80.0 %" in markdown
    assert "Incomplete sweep" not in markdown and report.results.unfinished == []


def test_table_gives_best_metric_per_ratio_and_largest_ratio_within_one_point(tmp_path):
    make_report(rate_sweep(tmp_path))
    markdown = (tmp_path / REPORT_FILE).read_text()
    quant = _table_row(markdown, "quant")
    # columns: compressor, uses data, >=2x, >=4x, >=8x, >=16x, largest ratio within 1 point, points x seeds
    assert quant[2].startswith("79.4 %") and "(4.1×)" in quant[2]
    assert quant[4].startswith("75.0 % ± 1.4") and "(8.0×)" in quant[4]
    assert quant[5] == "–" and quant[6] == "4.1× (79.4 %)" and quant[7] == "2 × 2"
    magnitude = _table_row(markdown, "magnitude")
    assert magnitude[3] == "–"  # its largest measured ratio is 3x
    assert magnitude[6].startswith("1.9×")  # 0.7-point drop at 1.9x; 37.5 points at 3x


def test_columns_for_32_and_64x_appear_only_where_a_point_reaches_them(tmp_path):
    sweep = rate_sweep(tmp_path)
    write_job(sweep, "quant_33", compressor="quant", ratio=33.0, metric=0.30, target_ratio=32)
    make_report(sweep)
    markdown = (tmp_path / REPORT_FILE).read_text()
    assert "best at ≥ 32×" in markdown and "best at ≥ 64×" not in markdown
    quant, magnitude = _table_row(markdown, "quant"), _table_row(markdown, "magnitude")
    assert quant[6].startswith("30.0 %") and "(33.0×)" in quant[6] and magnitude[6] == "–"


def test_tolerance_changes_what_counts_as_lossless(tmp_path):
    make_report(rate_sweep(tmp_path), tolerance=0.001)
    assert _table_row((tmp_path / REPORT_FILE).read_text(), "quant")[6] == "–"


def test_partial_sweep_reports_finished_jobs_and_names_the_rest(tmp_path):
    write_job(tmp_path, "quant/a", compressor="quant", ratio=4.0, metric=0.79, target_ratio=4.0)
    write_unfinished_job(tmp_path, "quant/b", ["compressor=quant", "compressor.target_ratio=8", "seed=0"])
    broken = write_unfinished_job(tmp_path, "quant/c", ["compressor=quant", "compressor.target_ratio=16", "seed=0"])
    (broken / "metrics.json").write_text('{"compressor": "quant", "compression')  # killed mid-write
    report = make_report(tmp_path)
    assert len(report.results.jobs) == 1 and report.results.unfinished == ["quant/b", "quant/c"]
    assert "2 job(s) without a complete metrics.json" in report.describe()
    assert "`quant/b`, `quant/c`" in (tmp_path / REPORT_FILE).read_text()


@pytest.mark.parametrize("make_dir, message", [
    (lambda p: p / "missing", "no such directory"),
    (lambda p: p, "no job dirs and with a complete metrics.json"),
    (lambda p: write_unfinished_job(p, "quant/a", ["compressor=quant"]).parent.parent,
     "1 job dirs, none with a complete metrics.json"),
])
def test_nothing_to_report_is_a_clear_error(tmp_path, make_dir, message):
    with pytest.raises(ReportError, match=message):
        make_report(make_dir(tmp_path))


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ReportError, match="ratio must be one of"):
        make_report(rate_sweep(tmp_path), ratio_key="bytes")
    with pytest.raises(ReportError, match="x axis must be one of"):
        make_report(rate_sweep(tmp_path), x_axis="bytes")


def test_the_plot_can_show_bits_per_weight(tmp_path):
    from big2small.report.plot import x_values

    by_ratio = matplotlib.image.imread(make_report(rate_sweep(tmp_path / "ratio")).plot_png)
    report = make_report(rate_sweep(tmp_path / "bits"), x_axis="bits")
    assert matplotlib.image.imread(report.plot_png).shape == by_ratio.shape
    assert (matplotlib.image.imread(report.plot_png) != by_ratio).any()
    points = report.panels[0].points
    bits, _ = x_values(points, bits_axis=True)
    assert bits == pytest.approx([32 / p.ratio for p in points])
    assert x_values(points, bits_axis=False)[0] == [p.ratio for p in points]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """The report CLI on a partial sweep, on no sweep and on a sweep whose report cannot be written, run at once
    (tests/warm_cli.py) and once per test run (tests/once.py): name -> (sweep dir, result)."""
    made = once_per_run(tmp_path_factory, "report_cli", _report_all)
    return {name: (Path(sweep), Result(**result)) for name, (sweep, result) in made.items()}


def _report_all(root):
    partial, unwritable = root / "partial", root / "unwritable"
    write_job(partial, "quant/a", compressor="quant", ratio=4.0, metric=0.79, target_ratio=4.0)
    write_unfinished_job(partial, "quant/b", ["compressor=quant"])
    write_job(unwritable, "quant/a", compressor="quant", ratio=4.0, metric=0.79, target_ratio=4.0)
    (unwritable / REPORT_FILE).mkdir()  # a folder where the report goes: the write fails as on a full disk
    sweeps = {"partial": partial, "empty": root / "empty", "unwritable": unwritable}
    results = run_many(REPORT_CLI[1], [[str(sweep)] for sweep in sweeps.values()], root / "logs", cwd=PROJECT_ROOT)
    return {name: (str(sweeps[name]), dataclasses.asdict(result)) for name, result in zip(sweeps, results, strict=True)}


def test_cli_reports_a_partial_sweep_and_fails_cleanly_on_an_empty_one(cli_runs):
    sweep, done = cli_runs["partial"]
    assert done.returncode == 0, done.stderr
    assert "report from 1 finished jobs" in done.stdout and "quant/b" in done.stdout
    assert (sweep / PLOT_FILE).is_file()
    _, empty = cli_runs["empty"]
    assert empty.returncode == 2
    assert empty.stderr.strip().count("\n") == 0 and "no such directory" in empty.stderr


def test_cli_names_a_report_file_it_cannot_write_and_leaves_no_partial_file(cli_runs):
    sweep, result = cli_runs["unwritable"]
    assert result.returncode == 2
    assert result.stderr.strip() == f"report: cannot write the report {sweep / REPORT_FILE}: Is a directory"
    assert not list(sweep.rglob("*.tmp"))
