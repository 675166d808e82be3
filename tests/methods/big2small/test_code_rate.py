"""The coded bits a rate-aware refinement weighs: exact at integer codes, a gradient towards cheaper levels, and what
the entropy coder stores."""

import math

import pytest
import torch

from big2small.encodings.entropy_codes import rans_encode
from big2small.methods.big2small.code_rate import CodeRate, entropy_bits
from big2small.methods.big2small.layer_codes import TERNARY, WeightCodes, weight_codes
from big2small.methods.big2small.rounding_offsets import RoundingOffsets


def ternary(codes: list[int]) -> WeightCodes:
    return WeightCodes(torch.tensor([codes]), torch.ones(1).half(), TERNARY)


def soft_step(stored: WeightCodes, offset: torch.Tensor | None = None, rate: CodeRate | None = None,
              priced: bool = True):
    """A refinement step over one layer whose codes start at `stored` (weights at those codes), offsets set."""
    rounding = RoundingOffsets({"w": stored.values()}, {"w": stored})
    if offset is not None:
        with torch.no_grad():
            rounding.offsets[0].copy_(offset)
    return rounding, rounding((rate or CodeRate({"w": stored})).tables(), priced=priced)


def test_bits_are_the_codes_entropy_and_the_soft_bits_and_counts_agree_at_integer_codes():
    stored = ternary([0, 0, 0, 0, 0, 0, 1, -1])
    rate = CodeRate({"w": stored})
    expected = -(6 * math.log2(6 / 8) + 2 * math.log2(1 / 8))
    assert rate.bits([stored.codes]) == pytest.approx(expected)
    _, step = soft_step(stored, rate=rate)
    assert float(step.soft_bits) == pytest.approx(expected, rel=1e-6)
    assert step.counts[0].tolist() == [1, 6, 1]
    assert entropy_bits(step.counts) == pytest.approx(expected)
    torch.testing.assert_close(step.weights["w"], stored.values())


def test_an_unpriced_step_counts_the_levels_and_gives_the_weights_their_gradient_without_soft_bits():
    stored = ternary([0, 0, 0, 0, 0, 0, 1, -1])
    offset = torch.tensor([[0.9, -0.9, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0]])  # codes 1, -1, 0, 0, 0, 0, 1, -1
    priced_rounding, priced = soft_step(stored, offset)
    rounding, unpriced = soft_step(stored, offset, priced=False)
    assert float(unpriced.soft_bits) == 0 and not unpriced.soft_bits.requires_grad
    assert [c.tolist() for c in unpriced.counts] == [c.tolist() for c in priced.counts] == [[2, 4, 2]]
    torch.testing.assert_close(unpriced.weights["w"], priced.weights["w"], rtol=0, atol=0)
    (unpriced.weights["w"] * torch.arange(8.0)).sum().backward()
    (priced.weights["w"] * torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(rounding.offsets[0].grad, priced_rounding.offsets[0].grad, rtol=0, atol=0)


def test_a_code_moved_off_the_common_level_costs_bits_in_proportion():
    stored = ternary([0, 0, 0, 0, 0, 0, 1, -1])
    rounding, step = soft_step(stored)
    step.soft_bits.backward()
    bit_step = math.log2(6 / 8) - math.log2(1 / 8)  # a +1 costs this many bits more than a 0
    assert float(rounding.offsets[0].grad[0, 0]) == pytest.approx(bit_step, rel=1e-3)  # a 0 moving up (tanh'(0) = 1)
    moved = torch.zeros(1, 8)
    moved[0, 0] = math.atanh(0.25)  # the first code a quarter of the way to +1
    _, moved_step = soft_step(stored, moved)
    _, still = soft_step(stored)
    assert float(moved_step.soft_bits - still.soft_bits) == pytest.approx(0.25 * bit_step, rel=1e-5)
    # A level no stored code takes is priced, not infinite: the 4-bit codes of a narrow layer never reach +-7.
    narrow = WeightCodes(torch.tensor([[0, 1, -1, 2]]), torch.ones(1).half(), 4)
    _, far = soft_step(narrow, torch.full((1, 4), 20.0))
    assert math.isfinite(float(far.soft_bits))


def test_the_step_s_gradients_are_autograd_s_of_the_same_rounding():
    """The offsets' gradient from the weights (straight through the rounding) and from the soft bits is what
    differentiating the written-out formula gives, within the fp16 it keeps for backward, also for offsets far
    along the tanh, which Adam still moves by full steps; so is the scales'."""
    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((6, 40))
    coded = weight_codes(weight, 3, rate_level=2, dead_zones=(0.5, 0.8))
    rate = CodeRate({"w": coded})
    rounding = RoundingOffsets({"w": weight}, {"w": coded}, learn_scales=True)
    with torch.no_grad():
        rounding.offsets[0].copy_(torch.randn(6, 40))
        rounding.offsets[0][0].fill_(7.0)  # far along tanh (d tanh 3e-6, below fp16's normal range)
        rounding.log_gains[0].copy_(torch.randn(6, 1) * 0.1)
    probe = torch.randn(6, 40)
    step = rounding(rate.tables())
    ((step.weights["w"] * probe).sum() + 0.3 * step.soft_bits).backward()
    got = rounding.offsets[0].grad.clone(), rounding.log_gains[0].grad.clone()

    offset, gain = (rounding.offsets[0].detach().clone().requires_grad_(), rounding.log_gains[0].detach().clone()
                    .requires_grad_())
    unrounded = rounding.unrounded_0 + torch.tanh(offset)
    codes = unrounded + (torch.round(unrounded).clamp(-3, 3) - unrounded).detach()
    costs, slopes = rate.tables()[0]
    inside = unrounded.clamp(-3, 3)
    below = torch.floor(inside.detach()).clamp(-3, 2)
    level = (below + 3).long()
    soft = (costs[level] + (inside - below) * slopes[level]).sum()
    ((codes * rounding.scale_0 * torch.exp(gain) * probe).sum() + 0.3 * soft).backward()
    torch.testing.assert_close(got[0], offset.grad, rtol=2e-3, atol=1e-5)
    torch.testing.assert_close(got[1], gain.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(step.soft_bits, soft.detach(), rtol=1e-6, atol=1e-4)


def test_the_bits_are_what_the_entropy_coder_stores():
    torch.manual_seed(0)
    codes = weight_codes(torch.distributions.Laplace(0.0, 0.05).sample((64, 288)), 4, rate_level=2,
                         dead_zones=(0.5, 0.8))
    bits = CodeRate({"w": codes}).bits([codes.codes])
    stream = rans_encode(codes.codes + 7, 15).numel()
    assert bits / 8 <= stream <= bits / 8 * 1.01 + 64  # the table and the last word beyond the entropy


def test_holding_moves_brings_refined_codes_within_the_limit_and_keeps_the_rest():
    from big2small.methods.big2small.code_rate import hold_within

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


def test_holding_to_stored_bytes_brings_context_coded_codes_within_the_byte_limit():
    from big2small.methods.big2small.code_rate import hold_to_bytes

    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 0.05).sample((32, 16, 3, 3))
    weight[:, ::2] *= 0.05  # half the kernels nearly silent: their codes are zeros together
    coded = weight_codes(weight, 3, rate_level=3, dead_zones=(0.5, 0.8))
    rounding = RoundingOffsets({"w": weight}, {"w": coded})
    rate = CodeRate({"w": coded})

    def stored_bytes():
        return rounding.codes({"w": coded})["w"].stored_size(True, True)[1]

    limit = stored_bytes()
    with torch.no_grad():
        rounding.offsets[0].copy_(torch.randn(weight.shape) * 2)  # about half the codes move one level
    assert stored_bytes() > 1.2 * limit
    held = hold_to_bytes(rounding, rate, stored_bytes, limit)
    assert stored_bytes() <= limit and held > 0
    assert hold_to_bytes(rounding, rate, stored_bytes, limit) == 0  # already within
