import pytest
import torch

from big2small.codec import read_artifact, write_artifact
from big2small.errors import ConfigError
from big2small.methods.none import NoCompression
from big2small.methods.registry import available, compressor_class, rebuild
from tests.conftest import tiny_cnn


def test_registry_knows_the_foundation_compressors():
    assert {"none", "quant", "big2small"} <= set(available())
    with pytest.raises(KeyError, match="unknown compressor"):
        compressor_class("no-such-method")


def test_none_round_trip_is_exact(tmp_path):
    model = tiny_cnn()
    write_artifact(NoCompression().fit(model), tmp_path / "a.safetensors")
    rebuilt = tiny_cnn(seed=1)
    rebuild(read_artifact(tmp_path / "a.safetensors"), rebuilt)
    for name in ("features.0.weight", "features.4.weight", "classifier.weight"):
        assert torch.equal(rebuilt.get_parameter(name), model.get_parameter(name))


def test_bad_common_options_are_rejected():
    with pytest.raises(ConfigError, match="target_ratio must be > 1"):
        compressor_class("quant")(bits=None, target_ratio=1.0)
    with pytest.raises(ConfigError, match="unknown layer types"):
        compressor_class("quant")(bits=8, layer_types=["attention"])
