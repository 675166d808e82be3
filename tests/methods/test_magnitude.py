import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.magnitude import MagnitudePruning
from tests.methods.roundtrip import digits_sized_cnn, round_trip


def test_layerwise_keeps_the_largest_weights_of_each_layer_exactly(tmp_path):
    model = digits_sized_cnn()
    _, rebuilt, _ = round_trip(MagnitudePruning(sparsity=0.75), model, tmp_path)
    for name in ("features.0.weight", "features.4.weight", "classifier.weight"):
        original, pruned = model.get_parameter(name).detach(), rebuilt.get_parameter(name).detach()
        kept = pruned != 0
        assert int(kept.sum()) == round(0.25 * original.numel())
        assert torch.equal(pruned[kept], original[kept])  # kept values are stored exactly
        assert original.abs()[~kept].max() <= original.abs()[kept].min()


def test_global_mode_uses_one_threshold_across_layers(tmp_path):
    model = digits_sized_cnn()
    _, rebuilt, _ = round_trip(MagnitudePruning(sparsity=0.6, mode="global"), model, tmp_path)
    names = ["features.0.weight", "features.4.weight", "features.7.weight", "classifier.weight"]
    kept = torch.cat([rebuilt.get_parameter(n).detach().reshape(-1) != 0 for n in names])
    values = torch.cat([model.get_parameter(n).detach().abs().reshape(-1) for n in names])
    assert int(kept.sum()) == round(0.4 * values.numel())
    assert values[~kept].max() <= values[kept].min()


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="mode must be one of"):
        MagnitudePruning(mode="random")
    with pytest.raises(ConfigError, match=r"sparsity must be in \[0, 1\)"):
        MagnitudePruning(sparsity=1.0)
