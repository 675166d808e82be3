"""src/evaluate.py in a subprocess: an artifact made by src/train.py, evaluated without fitting anything."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from big2small.codec import read_artifact, write_artifact
from big2small.models.small_cnn import SmallCNN
from tests.conftest import PROJECT_ROOT

TRAIN = [sys.executable, str(PROJECT_ROOT / "src" / "train.py")]
EVALUATE = [sys.executable, str(PROJECT_ROOT / "src" / "evaluate.py")]


def _cli(entry, args, root, env=None):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run([*entry, *args, f"paths.output_root={root}", f"paths.cache_dir={root / 'cache'}",
                           "task.epochs=3"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quant run that stores the uncompressed parameters and exports the rebuilt model."""
    root = tmp_path_factory.mktemp("train")
    result = _cli(TRAIN, ["compressor=quant", "compressor.bits=4", "logger=none", "store_uncompressed=true",
                          f"export={root / 'rebuilt.safetensors'}", f"hydra.run.dir={root / 'run'}"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


def test_evaluate_reproduces_the_train_runs_metric_and_export(trained, tmp_path):
    run = json.loads((trained / "run" / "metrics.json").read_text())
    assert run["artifact_bytes"] == (trained / "run" / "compressed.safetensors").stat().st_size
    assert run["stored_uncompressed"] and run["compressed_bytes"] < run["artifact_bytes"]
    base = next((trained / "cache" / "base_models").glob("*.safetensors"))
    result = _cli(EVALUATE, [f"artifact={trained / 'run' / 'compressed.safetensors'}", "logger=wandb",
                             f"model.checkpoint={base}", f"export={tmp_path / 'again.safetensors'}",
                             f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["compressed_metric"] == run["compressed_metric"]
    assert metrics["base_metric"] == run["base_metric"]
    assert metrics["compression_ratio"] == run["compression_ratio"]
    assert list((tmp_path / "eval" / "wandb").glob("offline-run-*")), "evaluate logs a W&B run like train"
    assert "[evaluate quant]" in result.stdout
    # The export is plain safetensors: torch and safetensors alone load it into the architecture.
    exported = load_file(str(tmp_path / "again.safetensors"))
    model = SmallCNN(in_channels=1, num_classes=10, channels=(16, 32, 64))
    model.load_state_dict(exported, strict=True)
    reference = load_file(str(trained / "rebuilt.safetensors"))
    assert all(torch.equal(exported[k], reference[k]) for k in reference)


def _one_line_error(result, kind, text):
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(kind)]
    assert len(errors) == 1 and text in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_an_artifact_for_another_architecture_is_one_line_naming_the_parameter(trained, tmp_path):
    result = _cli(EVALUATE, [f"artifact={trained / 'run' / 'compressed.safetensors'}", "logger=none",
                             "model.net.channels=[16,32,32]", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    _one_line_error(result, "ArtifactError", "made for another architecture: features.")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_an_altered_artifact_is_one_line(trained, tmp_path):
    data = bytearray((trained / "run" / "compressed.safetensors").read_bytes())
    data[-10] ^= 0x01
    (tmp_path / "altered.safetensors").write_bytes(bytes(data))
    result = _cli(EVALUATE, [f"artifact={tmp_path / 'altered.safetensors'}", "logger=none",
                             f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    _one_line_error(result, "ArtifactError", "checksum mismatch")


def test_a_nan_payload_with_its_checksum_recomputed_is_one_line_naming_the_tensor(trained, tmp_path):
    forged = read_artifact(trained / "run" / "compressed.safetensors")
    forged.tensors["ranges"] = torch.full_like(forged.tensors["ranges"], float("nan"))
    write_artifact(forged, tmp_path / "nan.safetensors")
    result = _cli(EVALUATE, [f"artifact={tmp_path / 'nan.safetensors'}", "logger=none",
                             f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    _one_line_error(result, "ArtifactError", "tensor 'ranges' holds NaN or inf values")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_with_a_key_set_an_unsigned_artifact_is_refused(trained, tmp_path):
    result = _cli(EVALUATE, [f"artifact={trained / 'run' / 'compressed.safetensors'}", "logger=none",
                             f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path, env={"BIG2SMALL_ARTIFACT_KEY": "secret"})
    _one_line_error(result, "ArtifactError", "not signed with the given key")
