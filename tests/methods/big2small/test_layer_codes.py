"""A layer's own codes: exact round trips at every width, ternary packing, least-error scales, forged bytes, trainable
roundings and scales."""

import math

import pytest
import torch

from big2small.methods.big2small.layer_codes import (
    CODE_CHOICES,
    TERNARY,
    WeightCodes,
    code_bytes,
    code_limit,
    unpack_weight_codes,
    weight_codes,
)
from big2small.methods.big2small.rounding_offsets import RoundingOffsets


def gaussian(shape=(8, 5, 3, 3), seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [*CODE_CHOICES, 2])
def test_codes_round_trip_through_their_packed_bytes(bits):
    weight = gaussian()
    codes = weight_codes(weight, bits)
    packed = codes.packed()
    assert packed.numel() + 2 * weight.shape[0] == code_bytes(weight.shape, bits)
    assert int(codes.codes.abs().max()) <= code_limit(bits)
    again = unpack_weight_codes(packed, codes.scale, tuple(weight.shape), bits)
    assert torch.equal(again.codes, codes.codes)


@pytest.mark.parametrize("entropy_coding", [False, True])
def test_outermost_8_bit_codes_survive_their_one_byte_storage(entropy_coding):
    codes = torch.tensor([[-127, 127, 0, 126], [127, -127, -126, 1]])
    weight = WeightCodes(codes, torch.ones(2, dtype=torch.float16), 8)
    assert weight.codes.dtype == torch.int8
    coding, stored = weight.stored(entropy_coding)
    again = unpack_weight_codes(stored, weight.scale, (2, 4), 8, coding)
    assert torch.equal(again.codes.long(), codes)
    assert torch.equal(again.values(), codes.float())


def test_ternary_codes_hold_the_two_bit_values_in_five_codes_per_byte():
    weight = gaussian((16, 16, 3, 3))
    ternary, two_bit = weight_codes(weight, TERNARY), weight_codes(weight, 2)
    assert torch.equal(ternary.values(), two_bit.values())
    assert code_bytes(weight.shape, TERNARY) == math.ceil(weight.numel() / 5) + 2 * 16
    assert code_bytes(weight.shape, TERNARY) < code_bytes(weight.shape, 2)


def test_each_channel_scale_has_no_more_error_than_its_max_scale():
    # heavy tails, as trained weights have: a few large values would stretch a max-based scale
    torch.manual_seed(0)
    weight = torch.distributions.Laplace(0.0, 1.0).sample((32, 256))
    for bits in (TERNARY, 3, 4, 8):
        limit = code_limit(bits)
        max_scale = (weight.abs().amax(dim=1, keepdim=True) / limit).half().float()
        max_error = ((torch.round(weight / max_scale).clamp(-limit, limit) * max_scale - weight) ** 2).sum(dim=1)
        codes = weight_codes(weight, bits)
        error = ((codes.values() - weight) ** 2).sum(dim=1)
        assert (error <= max_error + 1e-6).all()
        if bits <= 3:  # few levels: clipping the tails removes much of the error
            assert error.sum() < 0.7 * max_error.sum()


def test_a_zero_channel_codes_to_zero():
    weight = gaussian((4, 9))
    weight[2] = 0
    codes = weight_codes(weight, 3)
    assert torch.equal(codes.values()[2], torch.zeros(9))
    assert torch.isfinite(codes.values()).all()


def test_forged_ternary_bytes_are_refused():
    weight = gaussian()
    codes = weight_codes(weight, TERNARY)
    forged = codes.packed().clone()
    forged[0] = 250
    with pytest.raises(ValueError, match="ternary"):
        unpack_weight_codes(forged, codes.scale, tuple(weight.shape), TERNARY)
    with pytest.raises(ValueError, match="ternary bytes"):
        unpack_weight_codes(forged[:-1], codes.scale, tuple(weight.shape), TERNARY)


def test_rounding_offsets_train_the_scales_only_when_asked():
    weight = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    coded = {"w": weight_codes(weight, 4)}
    fixed = RoundingOffsets({"w": weight}, coded)
    assert not any(g.requires_grad for g in fixed.log_gains)
    torch.testing.assert_close(fixed().weights["w"], coded["w"].values())
    learned = RoundingOffsets({"w": weight}, coded, learn_scales=True)
    with torch.no_grad():
        learned.log_gains[0].fill_(math.log(2.0))
    torch.testing.assert_close(learned().weights["w"], 2 * coded["w"].values())
    refined = learned.codes(coded)["w"]
    assert torch.equal(refined.codes, coded["w"].codes) and refined.scale.dtype == torch.float16
    torch.testing.assert_close(refined.scale.float(), 2 * coded["w"].scale.float())
