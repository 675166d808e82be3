"""The refinement's early steps see the coded weights blended towards their codes before rounding: in proportion,
with the gradient straight through the rounding whatever the blend, and the rounded codes alone once the soft share
of the steps has passed."""

import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.big2small.code_rate import CodeRate
from big2small.methods.big2small.layer_codes import weight_codes
from big2small.methods.big2small.rounding_offsets import RoundingOffsets, soft_blend
from big2small.methods.big2small.settings import RefinementSettings


def blended_step(blend: float, learn_scales: bool = False):
    """One step over a 3-bit layer with moved offsets, its weights' gradient `probe`: (its rounding, the step, the
    unrounded codes x scale, probe)."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 40, generator=generator) * 0.05
    coded = weight_codes(weight, 3)
    rounding = RoundingOffsets({"w": weight}, {"w": coded}, learn_scales=learn_scales)
    with torch.no_grad():
        rounding.offsets[0].copy_(torch.randn(6, 40, generator=generator))
    step = rounding(CodeRate({"w": coded}).tables(), blend=blend)
    probe = torch.randn(6, 40, generator=generator)
    (step.weights["w"] * probe).sum().backward()
    with torch.no_grad():
        unrounded = rounding.unrounded(0).clamp(-3, 3) * rounding.scale_0
    return rounding, step, unrounded, probe


def test_a_blended_step_sees_its_weights_that_share_of_the_way_to_the_codes_before_rounding():
    _, rounded, unrounded, _ = blended_step(0.0)
    _, soft, _, _ = blended_step(1.0)
    _, quarter, _, _ = blended_step(0.25)
    assert not torch.allclose(rounded.weights["w"], unrounded)
    torch.testing.assert_close(soft.weights["w"], unrounded)
    torch.testing.assert_close(quarter.weights["w"], rounded.weights["w"] + 0.25 * (unrounded - rounded.weights["w"]))
    # what is counted and priced is the rounded codes, whatever the weights see
    assert [c.tolist() for c in quarter.counts] == [c.tolist() for c in rounded.counts]
    torch.testing.assert_close(quarter.soft_bits, rounded.soft_bits)


def test_the_offsets_gradient_passes_straight_through_the_rounding_at_any_blend():
    rounded, _, _, _ = blended_step(0.0)
    soft, _, _, _ = blended_step(0.7)
    torch.testing.assert_close(soft.offsets[0].grad, rounded.offsets[0].grad, rtol=0, atol=0)
    # the scales' gradient follows the codes the weights saw (d weight / d log gain = the weight, at gain 1)
    learned, step, _, probe = blended_step(1.0, learn_scales=True)
    torch.testing.assert_close(learned.log_gains[0].grad, (probe * step.weights["w"].detach()).sum(1, keepdim=True))


def test_the_blend_falls_from_one_to_zero_over_its_share_of_the_steps():
    assert [soft_blend(step, 100, 0.5) for step in (0, 25, 50, 99)] == [1.0, 0.5, 0.0, 0.0]
    assert soft_blend(10, 100, 1.0) == pytest.approx(0.9)
    assert soft_blend(0, 100, 0.0) == 0.0


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_soft_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ConfigError, match="soft_share"):
        RefinementSettings(soft_share=share)
