"""Error-compensated codes: same grid, less output error on the inputs they were compensated on, nearest codes where
inputs are uncorrelated, and a whole fit that starts from them."""

import copy

import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.methods.big2small.compensation import compensated, compensated_codes, input_moments
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.layer_codes import code_limit, weight_codes
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.registry import rebuild
from tests.conftest import tiny_cnn
from tests.methods.big2small.test_big2small import trainer_factory


def correlated_inputs(count=512, features=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(features, features, generator=generator) + 2 * torch.eye(features)
    return torch.randn(count, features, generator=generator) @ mixing


def test_compensated_codes_keep_the_grid_and_cut_the_output_error():
    layer = nn.Linear(48, 24, bias=False)
    torch.manual_seed(0)
    nn.init.normal_(layer.weight)
    x = correlated_inputs()
    weight = layer.weight.detach()
    for bits, rate_level in ((3, 0), (3, 2)):  # nearest rounding, and dead zones at a rate level
        nearest = weight_codes(weight, bits, rate_level, dead_zones=(0.5, 0.65, 0.8, 1.0))
        moments = input_moments(layer, ["weight"], x, 64)["weight"]
        better = compensated(weight, nearest, moments)
        assert torch.equal(better.scale, nearest.scale)
        assert int(better.codes.abs().max()) <= code_limit(bits)
        assert not torch.equal(better.codes, nearest.codes)

        def output_error(codes):
            return float(((x @ codes.values().T - x @ weight.T) ** 2).mean())

        assert output_error(better) < 0.8 * output_error(nearest)


def test_uncorrelated_inputs_leave_the_nearest_codes():
    weight = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    nearest = weight_codes(weight, 4)
    assert torch.equal(compensated(weight, nearest, torch.eye(32)).codes, nearest.codes)


def test_a_fit_starting_from_compensated_codes_refines_them_and_round_trips(tmp_path):
    model = tiny_cnn()

    def fitted(start: str):
        compressor = Big2SmallCompressor(target_ratio=4, input_shape=[1, 12, 12],
                                         refinement={"inputs": "noise", "steps": 5, "num_inputs": 8, "batch_size": 4,
                                                     "start": start})
        return compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))

    nearest, started, sequential = fitted("nearest"), fitted("compensated"), fitted("sequential")
    assert started.config["refinement"]["start"] == "compensated"
    assert "compensation" in started.phase_seconds and "compensation" not in nearest.phase_seconds
    assert any(not torch.equal(nearest.tensors[k], started.tensors[k]) for k in nearest.tensors)
    assert any(not torch.equal(sequential.tensors[k], started.tensors[k]) for k in started.tensors)
    for compressed in (started, sequential):
        rebuilt = rebuild(compressed, copy.deepcopy(model))
        assert torch.isfinite(rebuilt(torch.randn(2, 1, 12, 12))).all()


def test_grouped_and_same_padded_convolutions_keep_their_nearest_codes():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, padding="same"))
    weights = {name: p.detach() for name, p in model.named_parameters() if name.endswith("weight")}
    coded = {name: weight_codes(w, 3) for name, w in weights.items()}
    x = torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    out = compensated_codes(model, coded, weights, x, 8, entropy_coding=False)
    assert out["0.weight"] is coded["0.weight"]
    assert out["1.weight"] is not coded["1.weight"]
    assert out["2.weight"] is coded["2.weight"]


def test_an_unknown_start_is_a_config_error():
    with pytest.raises(ConfigError, match="start"):
        Big2SmallCompressor(refinement={"start": "best"})


def test_plans_under_compensate_above_bits_start_from_nearest_codes():
    settings = RefinementSettings(start="compensated", compensate_above_bits=1.5, light_above_bits=3.0,
                                  heavy_below_bits=None)
    assert settings.for_bits_per_weight(1.9).start == "compensated"
    assert settings.for_bits_per_weight(3.6).start == "compensated"
    coarse = settings.for_bits_per_weight(1.0)
    assert coarse.start == "nearest" and coarse.steps == settings.steps
    assert RefinementSettings(start="compensated", compensate_above_bits=None).for_bits_per_weight(0.5).start == \
        "compensated"


def test_compensated_codes_far_cheaper_than_the_nearest_ones_are_not_kept(monkeypatch):
    from big2small.methods.big2small import compensation
    from big2small.methods.big2small.layer_codes import WeightCodes

    model = nn.Sequential(nn.Linear(32, 16))
    weight = model[0].weight.detach()
    coded = {"0.weight": weight_codes(weight, 4)}
    x = correlated_inputs(64, 32)
    zeros = WeightCodes(torch.zeros_like(weight), coded["0.weight"].scale, 4)  # a stream of one symbol
    monkeypatch.setattr(compensation, "compensated", lambda *_: zeros)
    assert compensated_codes(model, coded, {"0.weight": weight}, x, 16, entropy_coding=True)["0.weight"] is \
        coded["0.weight"]
    assert compensated_codes(model, coded, {"0.weight": weight}, x, 16, entropy_coding=False)["0.weight"] is zeros


def test_bytes_freed_by_cheaper_started_codes_are_chosen_again(tmp_path, monkeypatch, caplog):
    from big2small.methods.big2small import compensation
    from big2small.methods.big2small import compressor as compressor_module
    from big2small.methods.big2small.layer_codes import WeightCodes
    from big2small.methods.budget import original_bytes

    def half_zeroed(weight, codes, moments, target=None):  # started codes with every other code 0: far fewer coded bytes
        keep = (torch.arange(codes.codes.numel()) % 2).reshape(codes.codes.shape)
        return WeightCodes(codes.codes * keep, codes.scale, codes.bits)

    monkeypatch.setattr(compensation, "compensated", half_zeroed)
    monkeypatch.setattr(compensation, "BYTE_FLOOR", 0.0)
    model = tiny_cnn()

    def ratio(spend_below: float) -> float:
        monkeypatch.setattr(compressor_module, "SPEND_FREED_BELOW", spend_below)
        compressor = Big2SmallCompressor(target_ratio=4, input_shape=[1, 12, 12],
                                         refinement={"inputs": "noise", "steps": 2, "num_inputs": 8, "batch_size": 4})
        compressed = compressor.fit(copy.deepcopy(model), trainer_factory=trainer_factory(tmp_path))
        return original_bytes(compressor.select(model)) / len(compressed.to_bytes())

    with caplog.at_level("INFO", logger=compressor_module.__name__):
        spent = ratio(0.98)
    assert "fewer bytes than chosen" in caplog.text
    unspent = ratio(0.0)
    assert 4 <= spent < unspent


class CalledOutOfOrder(nn.Module):
    """Two linear layers defined in one order and run in the other."""

    def __init__(self):
        super().__init__()
        self.last = nn.Linear(32, 8)
        self.first = nn.Linear(24, 32)

    def forward(self, x):
        return self.last(torch.relu(self.first(x)))


def output_error(model, coded, x):
    from big2small.graph.weights import set_parameter

    rebuilt = copy.deepcopy(model)
    for name, codes in coded.items():
        set_parameter(rebuilt, name, codes.values())
    with torch.no_grad():
        return float(((rebuilt(x) - model(x)) ** 2).mean())


def test_sequential_codes_run_in_the_models_order_and_cut_the_error_of_the_layers_before():
    from big2small.methods.big2small.compensation import run_order

    torch.manual_seed(3)
    model = CalledOutOfOrder()
    x = correlated_inputs(512, 24)
    assert run_order(model, ["last.weight", "first.weight"], x[:1]) == ["first.weight", "last.weight"]
    weights = {name: p.detach() for name, p in model.named_parameters() if name.endswith("weight")}
    coded = {name: weight_codes(w, 2) for name, w in weights.items()}
    each = compensated_codes(model, coded, weights, x, 64, entropy_coding=True)
    sequential = compensated_codes(model, coded, weights, x, 64, entropy_coding=True, sequential=True)
    assert torch.equal(sequential["first.weight"].codes, each["first.weight"].codes)  # nothing runs before it
    assert torch.equal(sequential["last.weight"].scale, coded["last.weight"].scale)
    assert output_error(model, sequential, x) < 0.9 * output_error(model, each, x) < output_error(model, coded, x)
