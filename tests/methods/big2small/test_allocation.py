import pytest
import torch

from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.errors import ConfigError
from big2small.methods.big2small.allocation import (
    bit_candidates,
    choose_widths,
    inr_bytes,
    raw_bytes,
    widest_within,
)
from big2small.methods.big2small.coords import build_targets
from big2small.methods.big2small.settings import INRSettings


def _targets():
    weights = {"big": torch.randn(64, 32, 3, 3), "small": torch.randn(4, 2, 3, 3)}
    return build_targets(weights, "kernel", "layer")


def test_widths_meet_the_ratio_and_tiny_layers_fall_back_to_fp16():
    targets = _targets()
    settings = INRSettings()
    original = 4 * sum(t.values.numel() for t in targets)

    def measure(widths):  # stand-in for the serialised artifact: payload plus a fixed 200-byte header
        return 200 + sum(inr_bytes(settings, t, widths[t.key], 16) if widths[t.key] else raw_bytes(t) for t in targets)

    widths = choose_widths(targets, settings, 16, 8.0, measure)
    assert widths["small"] is None and widths["big"] >= settings.min_width
    assert original / measure(widths) >= 8.0
    wider = dict(widths, big=widths["big"] + 1)
    assert original / measure(wider) < 8.0 * 1.1  # close to the budget, not far below it


def test_unreachable_ratio_is_a_config_error():
    targets = _targets()
    with pytest.raises(ConfigError, match="out of reach"):
        choose_widths(targets, INRSettings(), 16, 1000.0, lambda widths: 10**6)


def test_bytes_a_capped_layer_cannot_take_go_to_the_other_layers():
    weights = {"big": torch.randn(128, 64, 3, 3), "mid": torch.randn(64, 32, 3, 3)}
    targets = build_targets(weights, "kernel", "layer")
    settings = INRSettings(max_width=96)  # below what the big layer's share would buy (about 130)
    original = 4 * sum(t.values.numel() for t in targets)

    def measure(widths):
        return 200 + sum(inr_bytes(settings, t, widths[t.key], 16) if widths[t.key] else raw_bytes(t) for t in targets)

    widths = choose_widths(targets, settings, 16, 8.0, measure)
    mid = next(t for t in targets if t.key == "mid")
    proportional = widest_within(settings, mid, 16, fp32_bytes(mid.values.numel()) / 8.0)
    assert widths["big"] == 96 and widths["mid"] > proportional
    assert original / measure(widths) >= 8.0


def test_each_lower_precision_candidate_is_the_widest_within_the_sized_inr_bytes():
    targets = _targets()[:1]
    settings = INRSettings()
    candidates = bit_candidates(targets, settings, {"big": 20}, (8, 6, 4))
    sized = inr_bytes(settings, targets[0], 20, 8)
    assert candidates["big"][8] == 20
    for bits in (6, 4):
        width = candidates["big"][bits]
        assert inr_bytes(settings, targets[0], width, bits) <= sized < inr_bytes(settings, targets[0], width + 1, bits)
    assert candidates["big"][4] > candidates["big"][6] > 20
    assert bit_candidates(targets, settings, {"big": None}, (8, 4)) == {}  # fp16 targets have no INR
