"""A whole experiment through the real CLI: `train.py -m +experiment=...` shortened by overrides, then re-run with
sweep.skip_done=true. Uses the digits experiment (seconds per job); the CIFAR experiments share its machinery."""

import csv
import json
import os
import subprocess
import sys

import pytest

from big2small.report import PLOT_FILE, REPORT_FILE
from big2small.runs import SUMMARY_FILE
from tests.conftest import PROJECT_ROOT

TRAIN = [sys.executable, str(PROJECT_ROOT / "src" / "train.py")]
# target_ratio=1 is refused (ConfigError): a failed job must not stop the sweep, and the report names it.
SHORT = ["compressor=quant", "compressor.target_ratio=4,8,1", "seed=0", "task.epochs=1"]


def _multirun(tmp_path, *overrides):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [*TRAIN, "-m", "+experiment=rate_accuracy_digits", *SHORT, f"paths.output_root={tmp_path}", *overrides],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow  # two CLI multiruns: ~30 s of CPU
def test_experiment_sweep_gives_job_runs_aggregate_run_and_report_then_skips_done_jobs(tmp_path):
    out = _multirun(tmp_path)
    assert "incomplete sweep: 1 job(s)" in out and "target_ratio=1," in out
    sweep = tmp_path / "sweeps" / "rate_accuracy_digits"
    jobs = {ratio: sweep / "quant" / f"compressor.target_ratio={ratio},seed=0,task.epochs=1" for ratio in (4, 8)}

    for ratio, job in jobs.items():
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["compressor"] == "quant" and metrics["target_ratio"] == ratio
        assert metrics["compression_ratio"] == pytest.approx(ratio, rel=0.05)
        assert metrics["artifact_bytes"] == (job / "compressed.safetensors").stat().st_size
        (run_dir,) = (job / "wandb").glob("offline-run-*")  # one W&B run per job
        record = next(run_dir.glob("run-*.wandb")).read_bytes()
        for label in (b"rate_accuracy_digits", b"quant", b"classification", b"digits", b"small_cnn"):
            assert label in record, f"W&B group/job_type/tags: {label!r} missing"

    (aggregate,) = (sweep / "wandb").glob("offline-run-*")
    assert b"aggregate" in next(aggregate.glob("run-*.wandb")).read_bytes()
    (jobs_table,) = (aggregate / "files" / "media" / "table").glob("jobs_*.table.json")
    assert len(json.loads(jobs_table.read_text())["data"]) == 2
    assert list((aggregate / "files" / "media" / "images").glob("rate_accuracy_plot_*.png"))

    assert (sweep / PLOT_FILE).stat().st_size > 10_000
    with open(sweep / SUMMARY_FILE) as handle:
        assert sorted(float(row["target_ratio"]) for row in csv.DictReader(handle)) == [4.0, 8.0]
    report = (sweep / REPORT_FILE).read_text()
    assert "| quant | no |" in report and "2 × 1" in report
    assert "Incomplete sweep" in report and "compressor.target_ratio=1,seed=0" in report

    # Re-run: the finished job is skipped; the one whose metrics.json was cut short runs again.
    (jobs[8] / "metrics.json").write_text('{"compressor": "quant"')
    out = _multirun(tmp_path, "sweep.skip_done=true", "logger=none")
    assert out.count("its metrics.json is complete") == 1 and str(jobs[4]) in out  # the refused job runs again
    assert json.loads((jobs[8] / "metrics.json").read_text())["target_ratio"] == 8
    assert len(list((jobs[4] / "wandb").glob("offline-run-*"))) == 1, "a skipped job logs no new run"
