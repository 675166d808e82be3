"""The flow of one run, through big2small.pipeline.run on composed configs (no subprocess)."""

import json

import pytest
from safetensors.torch import save_file

from big2small.codec import read_artifact
from big2small.errors import ConfigError, FittingError
from big2small.pipeline import ARTIFACT_FILE, run
from tests.conftest import compose_config

REQUIRED_KEYS = {
    "task", "data", "model", "compressor", "target_ratio", "original_bytes", "compressed_bytes",
    "uncompressed_bytes", "compression_ratio", "model_compression_ratio", "metric_name", "base_metric",
    "compressed_metric", "metric_drop", "fit_seconds", "decode_seconds", "seed",
}
TIMING_KEYS = {"fit_seconds", "decode_seconds", "artifact", "base_model_source"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One trained digits model shared by the tests of this module."""
    return tmp_path_factory.mktemp("cache")


def _run(tmp_path, cache_dir, overrides, name="job"):
    cfg = compose_config(["logger=none", f"paths.cache_dir={cache_dir}", *overrides])
    return run(cfg, tmp_path / name)


def test_quant_4_bits_gives_close_to_8x_and_small_drop(tmp_path, cache_dir):
    metrics = _run(tmp_path, cache_dir, ["compressor=quant", "compressor.bits=4"])
    assert REQUIRED_KEYS <= set(metrics)
    # The file holds the whole model (the default store_uncompressed=true); the ratio counts the compressed part.
    assert metrics["artifact_bytes"] == (tmp_path / "job" / ARTIFACT_FILE).stat().st_size
    assert metrics["compressed_bytes"] == read_artifact(tmp_path / "job" / ARTIFACT_FILE).compressed_bytes()
    assert metrics["uncompressed_bytes"] == metrics["artifact_bytes"] - metrics["compressed_bytes"] > 0
    # 4-bit codes are 8x smaller than fp32 and entropy coding saves a little on trained weights; fp16 channel
    # ranges and the header cost some of it back.
    assert 7.0 < metrics["compression_ratio"] < 9.0
    assert metrics["base_metric"] > 0.9, "the default digits model should train well above 90 %"
    assert metrics["metric_drop"] < 0.03
    on_disk = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert on_disk["compressed_bytes"] == metrics["compressed_bytes"]
    assert [row["layer"] for row in on_disk["layers"]][-1] == "classifier.weight"
    assert all(row["relative_error"] < 0.2 for row in on_disk["layers"])


def test_a_big2small_run_splits_its_fit_seconds_into_phases(tmp_path, cache_dir):
    metrics = _run(tmp_path, cache_dir, ["compressor=big2small", "compressor.fit.steps=5", "compressor.fit.inrs=all",
                                         "compressor.refinement.steps=2", "compressor.refinement.num_inputs=8",
                                         "compressor.refinement.input_steps=2"])
    phases = json.loads((tmp_path / "job" / "metrics.json").read_text())["phase_seconds"]
    assert list(phases) == ["allocation", "weight_fitting", "codec_choice", "input_synthesis", "compensation",
                            "refinement"]
    assert all(seconds > 0 for seconds in phases.values())
    assert sum(phases.values()) <= metrics["fit_seconds"]
    assert metrics["compressor_config"] == "big2small"  # no config name given: the compressor's name


def test_accounting_adds_up(tmp_path, cache_dir):
    m = _run(tmp_path, cache_dir, ["compressor=none", "store_uncompressed=false"])
    assert m["compressed_bytes"] == m["artifact_bytes"] == (tmp_path / "job" / ARTIFACT_FILE).stat().st_size
    assert m["original_bytes"] + m["uncompressed_bytes"] == 4 * m["num_parameters"]
    assert m["compression_ratio"] == pytest.approx(m["original_bytes"] / m["compressed_bytes"])
    assert 0.95 < m["compression_ratio"] < 1.0  # fp32 copy plus a header
    assert m["metric_drop"] == 0.0


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    overrides = ["compressor=quant", "compressor.bits=3", "task.epochs=2"]
    first = _run(tmp_path, tmp_path / "cache_a", overrides, "a")
    second = _run(tmp_path, tmp_path / "cache_b", overrides, "b")  # trains again from scratch
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMING_KEYS}  # noqa: E731
    assert strip(first) == strip(second)
    assert (tmp_path / "a" / ARTIFACT_FILE).read_bytes() == (tmp_path / "b" / ARTIFACT_FILE).read_bytes()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["compressor=quant", "compressor.bits=0"], "bits must be an integer in 2..16"),
        (["compressor=quant", "compressor.bits=null", "compressor.target_ratio=1"], "target_ratio must be > 1"),
        (["compressor=big2small", "compressor.target_ratio=0.5"], "target_ratio must be > 1"),
        (["task.epochs=0"], "epochs must be >= 1"),
        (["seed=-1"], "seed must be an integer >= 0"),
    ],
)
def test_bad_values_fail_before_any_training(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _run(tmp_path, tmp_path / "cache", overrides)
    assert not (tmp_path / "cache").exists(), "nothing may be trained before the config is validated"


def test_missing_checkpoint_names_the_path(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match="file not found: .*missing.safetensors"):
        _run(tmp_path, cache_dir, [f"model.checkpoint={tmp_path / 'missing.safetensors'}"])


def test_nan_weights_in_a_checkpoint_stop_the_run_naming_the_tensor(tmp_path, cache_dir):
    from big2small.models.small_cnn import SmallCNN

    state = SmallCNN().state_dict()
    state["features.4.weight"][0, 0, 0, 0] = float("nan")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ConfigError, match="features.4.weight holds NaN or inf"):
        _run(tmp_path, cache_dir, [f"model.checkpoint={tmp_path / 'nan.safetensors'}", "compressor=big2small",
                                   "compressor.fit.steps=5"])
    assert not (tmp_path / "job" / ARTIFACT_FILE).exists()


def test_diverging_inr_fit_stops_with_the_layer_named(tmp_path, cache_dir):
    with pytest.raises(FittingError, match=r"diverged.*(features\.\d+\.weight|classifier\.weight)"):
        _run(tmp_path, cache_dir, ["compressor=big2small", "compressor.fit.steps=30", "compressor.fit.lr=1e30",
                                   "compressor.fit.inrs=all"])


@pytest.mark.parametrize("overrides, shape", [
    ([], [1, 8, 8]),                                                 # digits images are 8x8, grey
    (["task=segmentation"], [3, 32, 32]),                            # shapes at its image_size
    (["compressor.input_shape=[1,16,16]"], [1, 16, 16]),             # the user's own setting wins
])
def test_big2small_takes_the_data_input_shape_unless_given_one(overrides, shape):
    from big2small.parts import build_parts

    parts = build_parts(compose_config(["logger=none", "compressor=big2small", *overrides]))
    assert parts.compressor.input_shape == shape


def test_the_summary_line_counts_how_layers_are_stored():
    from big2small.pipeline import summary_line

    metrics = {"metric_name": "accuracy", "compressor": "big2small", "compression_ratio": 8.0,
               "model_compression_ratio": 7.7, "compressed_bytes": 100, "base_metric": 0.81,
               "compressed_metric": 0.80, "metric_drop": 0.01,
               "layers": [{"stored_as": "codes"}, {"stored_as": "codes"}, {"stored_as": "inr"}]}
    assert summary_line(metrics).endswith("| INR 1/3, codes 2/3")
    metrics["layers"] = [{"bits": 4}]  # compressors whose rows do not say how a layer is stored
    assert summary_line(metrics).endswith("(drop +0.0100)")
