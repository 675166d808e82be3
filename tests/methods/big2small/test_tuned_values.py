import pytest
import torch

from big2small.methods.big2small import tuned_values


def changes(seed: int, sizes: list[int]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=generator) * 10.0 ** -(index % 3) for index, size in enumerate(sizes)]


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_each_change_comes_back_within_half_its_tensors_step_in_the_bytes_counted(bits):
    sizes = [16, 1, 64, 10]
    given = changes(bits, sizes)
    stored = tuned_values.encode(given, bits)
    assert sum(t.numel() * t.element_size() for t in stored.values()) == tuned_values.stored_bytes(sizes, bits)
    decoded = tuned_values.decode(stored, sizes, bits)
    for change, back, step in zip(given, decoded, stored["tuned_scales"].float(), strict=True):
        assert float(step) == pytest.approx(float(change.abs().max()) / tuned_values.half_levels(bits), rel=1e-3)
        assert (back - change).abs().max() <= step / 2 + 1e-6
        assert float(back.abs().max()) == pytest.approx(float(change.abs().max()), rel=1e-3)  # the largest is a level


def test_unchanged_values_store_zero_steps_and_decode_to_zero():
    stored = tuned_values.encode([torch.zeros(5), torch.zeros(3)], 4)
    assert torch.equal(stored["tuned_scales"], torch.zeros(2, dtype=torch.float16))
    assert all(torch.equal(back, torch.zeros(n)) for back, n in zip(tuned_values.decode(stored, [5, 3], 4), [5, 3], strict=True))


def test_fp16_values_cost_two_bytes_each_and_levels_cost_their_bits_plus_a_step_per_tensor():
    assert tuned_values.stored_bytes([16, 16, 10], None) == 84
    assert tuned_values.stored_bytes([16, 16, 10], 8) == 42 + 6
    assert tuned_values.stored_bytes([16, 16, 10], 4) == 21 + 6


def test_stored_tensors_that_do_not_fit_the_declared_sizes_are_refused():
    stored = tuned_values.encode(changes(0, [8, 8]), 3)
    with pytest.raises(ValueError, match="tuned_scales"):
        tuned_values.decode(stored, [8, 4, 4], 3)
    with pytest.raises(ValueError, match="packed bytes"):
        tuned_values.decode(stored, [8, 9], 3)
    beyond = {**stored, "tuned_levels": torch.full_like(stored["tuned_levels"], 255)}  # level 7 of a 3-bit grid
    with pytest.raises(ValueError, match="beyond"):
        tuned_values.decode(beyond, [8, 8], 3)
