import pytest
import torch

from big2small.methods.big2small import scale_grid
from big2small.methods.big2small.layer_codes import weight_codes


def _layer(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    spread = torch.logspace(-3, 0, 32).reshape(-1, 1, 1, 1)  # channels three decades apart
    return torch.randn(32, 16, 3, 3, generator=generator) * spread


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_searched_scales_are_grid_points_that_the_file_gives_back_exactly(bits):
    codes = weight_codes(_layer(), bits, log_scales=True)
    top, steps = scale_grid.encode(codes.scale)
    assert steps.dtype == torch.uint8 and len(steps) == 32
    assert torch.equal(scale_grid.decode(top, steps), codes.scale)


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_grid_scales_cost_little_error_against_fp16_scales(bits):
    weight = _layer(1)
    errors = {}
    for log_scales in (False, True):
        values = weight_codes(weight, bits, log_scales=log_scales).values()
        errors[log_scales] = float(((values - weight) ** 2).sum() / (weight ** 2).sum())
    assert errors[True] <= errors[False] * 1.02


def test_a_scale_off_the_grid_lands_on_its_nearest_point():
    scale = torch.tensor([0.1, 0.05, 0.0123])
    top, steps = scale_grid.encode(scale)
    stored = scale_grid.decode(top, steps)
    assert ((stored / scale).log2().abs() <= 0.5 / scale_grid.STEPS_PER_OCTAVE + 1e-9).all()


def test_scales_beyond_the_grid_below_the_largest_take_its_lowest_step():
    top, steps = scale_grid.encode(torch.tensor([1.0, 2.0 ** -20]))
    assert steps.tolist() == [0, scale_grid.LEVELS - 1]
    assert float(scale_grid.decode(top, steps)[1]) == pytest.approx(2.0 ** -(255 / 32))


@pytest.mark.parametrize("top", [scale_grid.HIGHEST_K + 1, scale_grid.LOWEST_K, -(2**15)])
def test_a_forged_top_is_refused(top):
    with pytest.raises(ValueError, match="scale grid top"):
        scale_grid.decode(top, torch.zeros(3, dtype=torch.uint8))


def test_grid_scales_take_a_byte_per_channel_and_two_per_layer():
    assert scale_grid.scale_bytes(64, True) == 66 and scale_grid.scale_bytes(64, False) == 128
