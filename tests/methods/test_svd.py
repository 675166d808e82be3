import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.methods.svd import Spectrum, SVDCompressor
from tests.methods.roundtrip import digits_sized_cnn, outputs, round_trip

IMAGES = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def test_full_rank_factors_reproduce_the_weight():
    weight = torch.randn(12, 5, 3, 3)
    spectrum = Spectrum(weight)
    first, second = spectrum.factors(spectrum.full_rank)
    torch.testing.assert_close((second @ first).reshape(weight.shape), weight, atol=1e-5, rtol=1e-5)


def test_split_layers_compute_the_truncated_product(tmp_path):
    model = digits_sized_cnn()
    compressed, rebuilt, _ = round_trip(SVDCompressor(rank_fraction=0.5), model, tmp_path)
    # The in-memory result: every weight replaced by its rank-r truncation, architecture unchanged.
    reference = digits_sized_cnn()
    with torch.no_grad():
        for layer in compressed.meta["layers"]:
            weight = reference.get_parameter(layer["name"])
            if layer["rank"] is not None:
                first, second = Spectrum(weight.detach()).factors(layer["rank"])
                weight.copy_((second @ first).reshape(weight.shape))
    assert isinstance(rebuilt.features[4], nn.Sequential)  # conv -> kxk conv to r, 1x1 conv to C_out
    assert rebuilt.features[4][0].out_channels == compressed.layer_stats["features.4.weight"]["rank"]
    torch.testing.assert_close(outputs(rebuilt, IMAGES), outputs(reference, IMAGES), atol=1e-4, rtol=1e-4)


def test_a_rank_two_model_is_rebuilt_exactly_at_rank_two(tmp_path):
    model = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 5))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(30, 2) @ torch.randn(2, 40))
    compressed, rebuilt, ratio = round_trip(SVDCompressor(rank_rule="energy", energy=0.999999), model, tmp_path)
    assert compressed.layer_stats["0.weight"]["rank"] == 2 and ratio > 1
    x = torch.randn(4, 40)
    torch.testing.assert_close(outputs(rebuilt, x), outputs(model, x), atol=1e-4, rtol=1e-4)


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="rank_rule must be one of"):
        SVDCompressor(rank_rule="random")
    with pytest.raises(ConfigError, match=r"rank_fraction must lie in \(0, 1\]"):
        SVDCompressor(rank_fraction=0)
    with pytest.raises(ConfigError, match="no plain Conv2d or Linear"):
        SVDCompressor().fit(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))
