"""src/evaluate.py in a subprocess: an artifact made by src/train.py, evaluated without fitting anything."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import big2small
from big2small.codec import read_artifact, write_artifact
from big2small.models.small_cnn import SmallCNN
from tests.conftest import PROJECT_ROOT
from tests.once import once_per_run
from tests.warm_cli import Result, run_many

TRAIN = [sys.executable, str(PROJECT_ROOT / "src" / "train.py")]
EVALUATE = [sys.executable, str(PROJECT_ROOT / "src" / "evaluate.py")]


def _env(extra=None):
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(extra or {})}


def _paths(root):
    return [f"paths.output_root={root}", f"paths.cache_dir={root / 'cache'}", "task.epochs=3"]


def _cli(entry, args, root, env=None):
    return subprocess.run([*entry, *args, *_paths(root)], cwd=PROJECT_ROOT, env=_env(env), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quant run with the default settings (the whole model in its artifact) that exports the rebuilt model;
    once per test run (tests/once.py)."""
    return Path(once_per_run(tmp_path_factory, "evaluate_trained", _train))


def _train(root):
    result = _cli(TRAIN, ["compressor=quant", "compressor.bits=4", "logger=none",
                          f"export={root / 'rebuilt.safetensors'}", f"hydra.run.dir={root / 'run'}"], root)
    assert result.returncode == 0, result.stderr[-3000:]
    return str(root)


def _same_state(path, reference):
    exported = load_file(str(path))
    return exported.keys() == reference.keys() and all(torch.equal(exported[k], reference[k]) for k in reference)


def test_a_runs_artifact_alone_evaluates_to_the_runs_metric(trained, tmp_path):
    run = json.loads((trained / "run" / "metrics.json").read_text())
    artifact = trained / "run" / "compressed.safetensors"
    assert run["artifact_bytes"] == artifact.stat().st_size
    assert run["stored_uncompressed"] and run["compressed_bytes"] < run["artifact_bytes"]
    result = _cli(EVALUATE, [f"artifact={artifact}", "logger=wandb", f"export={tmp_path / 'again.safetensors'}",
                             f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["compressed_metric"] == run["compressed_metric"] and metrics["base_metric"] is None
    assert metrics["compression_ratio"] == run["compression_ratio"]
    assert metrics["artifact_bytes"] == run["artifact_bytes"]
    assert list((tmp_path / "eval" / "wandb").glob("offline-run-*")), "evaluate logs a W&B run like train"
    assert "[evaluate quant]" in result.stdout
    # The export is plain safetensors: torch and safetensors alone load it into the architecture.
    reference = load_file(str(trained / "rebuilt.safetensors"))
    assert _same_state(tmp_path / "again.safetensors", reference)
    SmallCNN(in_channels=1, num_classes=10, channels=(16, 32, 64)).load_state_dict(reference, strict=True)
    # The Python API needs nothing but the file either: the artifact names its architecture.
    alone = big2small.load(artifact)
    assert all(torch.equal(alone.state_dict()[k], reference[k]) for k in reference)


def test_an_artifact_without_the_rest_of_the_model_takes_it_from_the_checkpoint(trained, tmp_path):
    """Artifacts of earlier runs (or store_uncompressed=false) hold only the compressed part."""
    compressed_part = tmp_path / "part.safetensors"
    size = write_artifact(read_artifact(trained / "run" / "compressed.safetensors").without_rest(), compressed_part)
    run = json.loads((trained / "run" / "metrics.json").read_text())
    assert size == run["compressed_bytes"]
    base = next((trained / "cache" / "base_models").glob("*.safetensors"))
    result = _cli(EVALUATE, [f"artifact={compressed_part}", "logger=none", f"model.checkpoint={base}",
                             f"export={tmp_path / 'again.safetensors'}", f"hydra.run.dir={tmp_path / 'eval'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["compressed_metric"] == run["compressed_metric"]
    assert metrics["base_metric"] == run["base_metric"]
    assert metrics["compression_ratio"] == run["compression_ratio"]
    assert _same_state(tmp_path / "again.safetensors", load_file(str(trained / "rebuilt.safetensors")))


def _one_line_error(result, kind, text):
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith(kind)]
    assert len(errors) == 1 and text in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def refused(trained, tmp_path_factory):
    """The evaluate command lines that must stop with one line, run at once (tests/warm_cli.py) and once per test
    run (tests/once.py)."""
    made = once_per_run(tmp_path_factory, "evaluate_refused", lambda root: _refuse_all(trained, root))
    return {name: (Path(folder), Result(**result)) for name, (folder, result) in made.items()}


def _refuse_all(trained, root):
    artifact = trained / "run" / "compressed.safetensors"
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0x01
    (root / "altered.safetensors").write_bytes(bytes(data))
    write_artifact(read_artifact(artifact).without_rest(), root / "part.safetensors")
    forged = read_artifact(artifact)
    forged.tensors["ranges"] = torch.full_like(forged.tensors["ranges"], float("nan"))
    write_artifact(forged, root / "nan.safetensors")
    cases = {
        "another architecture": ([f"artifact={artifact}", "model.net.channels=[16,32,32]"], {}),
        "altered": ([f"artifact={root / 'altered.safetensors'}"], {}),
        "unsigned": ([f"artifact={artifact}"], {"BIG2SMALL_ARTIFACT_KEY": "secret"}),
        "compressed part alone": ([f"artifact={root / 'part.safetensors'}"], {}),
        "nan payload": ([f"artifact={root / 'nan.safetensors'}"], {}),
    }
    command_lines = [[*args, "logger=none", *_paths(root / name), f"hydra.run.dir={root / name / 'eval'}"]
                     for name, (args, _) in cases.items()]
    results = run_many(EVALUATE[1], command_lines, root / "logs", cwd=PROJECT_ROOT,
                       envs=[_env(env) for _, env in cases.values()])
    return {name: (str(root / name), dataclasses.asdict(result)) for name, result in zip(cases, results, strict=True)}


def test_an_artifact_for_another_architecture_is_one_line_naming_the_parameter(refused):
    folder, result = refused["another architecture"]
    _one_line_error(result, "ArtifactError", "made for another architecture: features.")
    assert not (folder / "eval" / "metrics.json").exists()


def test_an_altered_artifact_is_one_line(refused):
    _one_line_error(refused["altered"][1], "ArtifactError", "checksum mismatch")


def test_with_a_key_set_an_unsigned_artifact_is_refused(refused):
    _one_line_error(refused["unsigned"][1], "ArtifactError", "not signed with the given key")


def test_without_the_rest_of_the_model_or_a_checkpoint_it_says_to_give_one(refused):
    _one_line_error(refused["compressed part alone"][1], "ConfigError", "give the base model as model.checkpoint=")


def test_a_nan_payload_with_its_checksum_recomputed_is_one_line_naming_the_tensor(refused):
    folder, result = refused["nan payload"]
    _one_line_error(result, "ArtifactError", "tensor 'ranges' holds NaN or inf values")
    assert not (folder / "eval" / "metrics.json").exists()
