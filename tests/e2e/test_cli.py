"""The real CLI in a subprocess: what a researcher types, and the files it leaves behind."""

import base64
import hashlib
import json
import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from tests.wandb_records import logged_artifacts

TRAIN = [sys.executable, str(PROJECT_ROOT / "src" / "train.py")]


def _cli(args, tmp_path, extra_env=None):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(extra_env or {})}
    return subprocess.run([*TRAIN, *args, f"paths.output_root={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}",
                           "task.epochs=3"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_single_run_writes_metrics_artifact_and_offline_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    result = _cli(["compressor=quant", "compressor.bits=4", f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # The file holds the whole model; compressed_bytes (and so the ratio) only what the compressor produced.
    assert metrics["artifact_bytes"] == (run_dir / "compressed.safetensors").stat().st_size
    assert metrics["stored_uncompressed"] and metrics["compressed_bytes"] < metrics["artifact_bytes"]
    assert metrics["compressor"] == "quant" and metrics["metric_name"] == "accuracy"
    assert metrics["compressor_config"] == "quant"  # the config chosen on the command line names the run
    assert list((run_dir / "wandb").glob("offline-run-*")), "an offline W&B run dir must exist"
    summary = [line for line in result.stdout.splitlines() if line.startswith("[quant] ratio")]
    assert summary and f"{metrics['compression_ratio']:.2f}x" in summary[0]
    # The artifact is attached to the W&B run, with what identifies it.
    (artifact,) = [a for a in logged_artifacts(run_dir) if a.type == "compressed-model"]
    assert artifact.name == "small_cnn-quant"
    metadata = json.loads(artifact.metadata)
    assert metadata["compressor"] == "quant" and metadata["compression_ratio"] == metrics["compression_ratio"]
    assert len(metadata["base_model_sha256"]) == 64
    (entry,) = artifact.manifest.contents
    digest = base64.b64encode(hashlib.md5((run_dir / "compressed.safetensors").read_bytes()).digest()).decode()
    assert entry.path == "compressed.safetensors" and entry.digest == digest
    # A short header instead of the whole config (that stays in .hydra/config.yaml); every line also in train.log.
    assert "compressor quant: bits=4" in result.stdout and "_target_" not in result.stdout
    log = (run_dir / "train.log").read_text()
    assert summary[0] in log and "compressor quant: bits=4" in log


def test_a_torchvision_classifier_runs_on_the_grey_digits(tmp_path):
    """torchvision builds for 3 channels; on the default 1-channel digits its stem takes 1 (models/torchvision_models)."""
    run_dir = tmp_path / "run"
    result = _cli(["model=torchvision", "model.name=resnet18", "compressor=quant", "compressor.bits=8",
                   "logger=none", f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"] == "resnet18" and metrics["compression_ratio"] > 3.5
    assert metrics["base_metric"] > 0.8  # it learns the digits through its new stem
    assert abs(metrics["compressed_metric"] - metrics["base_metric"]) < 0.02  # and 8-bit codes keep what it learned
