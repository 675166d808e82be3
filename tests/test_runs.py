"""Sweep bookkeeping: which job dirs hold a complete metrics.json, and sweep.skip_done in pipeline.run."""

import json

from big2small.pipeline import ARTIFACT_FILE, run
from big2small.runs import collect_job_metrics, finished_job_metrics, read_complete_metrics
from tests.conftest import compose_config
from tests.report.fake_sweep import write_job


def _digits_job(tmp_path):
    """A finished job's metrics.json as the default run (small_cnn on digits, seed 0) writes it."""
    return write_job(tmp_path, "job", compressor="quant", ratio=4.0, metric=0.9, target_ratio=4.0,
                     model="small_cnn", data="digits")


def test_complete_partial_and_missing_metrics(tmp_path):
    job = write_job(tmp_path, "a", compressor="quant", ratio=4.0, metric=0.9)
    assert read_complete_metrics(job)["compression_ratio"] == 4.0
    metrics = json.loads((job / "metrics.json").read_text())
    del metrics["compressed_metric"]
    (job / "metrics.json").write_text(json.dumps(metrics))
    assert read_complete_metrics(job) is None, "a metrics.json without the metric is not a finished job"
    (job / "metrics.json").write_text("{")
    assert read_complete_metrics(job) is None
    assert read_complete_metrics(tmp_path / "nowhere") is None


def test_summary_rows_come_only_from_complete_jobs(tmp_path):
    write_job(tmp_path, "x/done", compressor="quant", ratio=4.0, metric=0.9)
    (tmp_path / "x" / "broken").mkdir()
    (tmp_path / "x" / "broken" / "metrics.json").write_text('{"compressor": "quant"}')
    rows = collect_job_metrics(tmp_path)
    assert [row["job_dir"] for row in rows] == ["x/done"]
    assert "layers" not in rows[0], "summary rows hold scalars only"


def test_finished_job_must_match_seed_model_and_data(tmp_path):
    job = _digits_job(tmp_path)
    assert finished_job_metrics(job, compose_config([]))["compressor"] == "quant"
    assert finished_job_metrics(job, compose_config(["seed=1"])) is None
    assert finished_job_metrics(job, compose_config(["model=cifar_resnet20", "data=cifar10"])) is None


def test_skip_done_returns_the_finished_metrics_without_running(tmp_path):
    job = _digits_job(tmp_path)
    before = json.loads((job / "metrics.json").read_text())
    cfg = compose_config(["logger=none", "sweep.skip_done=true", f"paths.output_root={tmp_path}"])
    assert run(cfg, job) == before
    assert not (job / ARTIFACT_FILE).exists(), "a skipped job must not compress again"
    assert not (tmp_path / "cache").exists(), "a skipped job must not train a base model"
