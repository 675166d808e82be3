import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.quant import UniformQuantizer
from tests.methods.roundtrip import digits_sized_cnn, round_trip


def test_16_bits_reproduce_the_weights(tmp_path):
    model = digits_sized_cnn()
    _, rebuilt, ratio = round_trip(UniformQuantizer(bits=16), model, tmp_path)
    for name in ("features.4.weight", "classifier.weight"):
        torch.testing.assert_close(rebuilt.get_parameter(name), model.get_parameter(name), rtol=0, atol=1e-4)
    assert 1.8 < ratio < 2.0


def test_bits_stay_uniform_when_no_target_is_set(tmp_path):
    compressed, _, ratio = round_trip(UniformQuantizer(bits=4), digits_sized_cnn(), tmp_path)
    assert {layer["bits"] for layer in compressed.meta["layers"]} == {4}
    assert 7.0 < ratio < 8.0


def test_target_ratio_takes_precedence_over_bits_and_mixes_widths(tmp_path):
    compressed, _, ratio = round_trip(UniformQuantizer(bits=8, target_ratio=5.0), digits_sized_cnn(), tmp_path)
    assert len({layer["bits"] for layer in compressed.meta["layers"]}) > 1  # 5x lies between 6 and 7 bits
    assert 5.0 <= ratio <= 5.25


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="bits must be an integer in 2..16"):
        UniformQuantizer(bits=1)
    with pytest.raises(ConfigError, match="set bits"):
        UniformQuantizer(bits=None)
