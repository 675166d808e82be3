"""The coded bits a rate-aware refinement weighs: exact at integer codes, a gradient towards cheaper levels, and what
the entropy coder stores."""

import math

import pytest
import torch

from big2small.encodings.entropy_codes import rans_encode
from big2small.methods.big2small.code_rate import CodeRate
from big2small.methods.big2small.layer_codes import TERNARY, WeightCodes, weight_codes


def ternary(codes: list[int]) -> WeightCodes:
    return WeightCodes(torch.tensor([codes]), torch.ones(1).half(), TERNARY)


def test_bits_are_the_codes_entropy_and_the_soft_bits_agree_at_integer_codes():
    stored = ternary([0, 0, 0, 0, 0, 0, 1, -1])
    rate = CodeRate({"w": stored})
    expected = -(6 * math.log2(6 / 8) + 2 * math.log2(1 / 8))
    assert rate.bits([stored.codes]) == pytest.approx(expected)
    assert float(rate.soft_bits([stored.codes.float()])) == pytest.approx(expected, rel=1e-6)


def test_a_code_moved_off_the_common_level_costs_bits_in_proportion():
    stored = ternary([0, 0, 0, 0, 0, 0, 1, -1])
    rate = CodeRate({"w": stored})
    unrounded = stored.codes.float().requires_grad_()
    rate.soft_bits([unrounded]).backward()
    step = math.log2(6 / 8) - math.log2(1 / 8)  # a +1 costs this many bits more than a 0
    assert float(unrounded.grad[0, 0]) == pytest.approx(step, rel=1e-5)  # a 0 moving up
    moved = stored.codes.float().clone()
    moved[0, 0] = 0.25
    assert float(rate.soft_bits([moved]) - rate.soft_bits([stored.codes.float()])) == pytest.approx(0.25 * step,
                                                                                                   rel=1e-5)
    # A level no stored code takes is priced, not infinite: the 4-bit codes of a narrow layer never reach +-7.
    narrow = WeightCodes(torch.tensor([[0, 1, -1, 2]]), torch.ones(1).half(), 4)
    assert math.isfinite(float(CodeRate({"w": narrow}).soft_bits([torch.full((1, 4), 7.0)])))


def test_the_bits_are_what_the_entropy_coder_stores():
    torch.manual_seed(0)
    codes = weight_codes(torch.distributions.Laplace(0.0, 0.05).sample((64, 288)), 4, rate_level=2,
                         dead_zones=(0.5, 0.8))
    bits = CodeRate({"w": codes}).bits([codes.codes])
    stream = rans_encode(codes.codes + 7, 15).numel()
    assert bits / 8 <= stream <= bits / 8 * 1.01 + 64  # the table and the last word beyond the entropy


def test_holding_moves_brings_refined_codes_within_the_limit_and_keeps_the_rest():
    from big2small.methods.big2small.code_rate import hold_within
    from big2small.methods.big2small.layer_codes import RoundingOffsets

    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((16, 72))
    coded = weight_codes(weight, 3, rate_level=3, dead_zones=(0.5, 0.8))
    rounding = RoundingOffsets({"w": weight}, {"w": coded})
    rate = CodeRate({"w": coded})
    stored_bits = rate.bits([coded.codes])
    with torch.no_grad():
        rounding.offsets[0].copy_(torch.randn(16, 72) * 2)  # about half the codes move one level
    moved = rounding.rounded()[0] != coded.codes
    assert rate.bits(rounding.rounded()) > 1.2 * stored_bits
    held = hold_within(rounding, rate, stored_bits)
    now = rounding.rounded()[0]
    assert rate.bits([now]) <= stored_bits
    assert 0 < held < int(moved.sum())  # only as many moves as the bits need are held back
    assert torch.equal(now[~moved], coded.codes[~moved].float())
    assert hold_within(rounding, rate, stored_bits) == 0  # already within
