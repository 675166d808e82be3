"""The synthesis's jitter (refinement.input_jitter): each input step sees its images rolled and mirrored at random."""

import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import jittered, synthetic_inputs
from tests.methods.big2small.test_big2small import trainer_factory
from tests.methods.big2small.test_refinement import _bn_gap, cnn_with_known_statistics


def _placements(images: torch.Tensor, pixels: int) -> list[torch.Tensor]:
    """Every batch that rolling `images` by at most `pixels` each way, and maybe mirroring them, can give."""
    shifts = range(-pixels, pixels + 1)
    rolled = [torch.roll(images, shifts=(down, across), dims=(2, 3)) for down in shifts for across in shifts]
    return rolled + [r.flip(3) for r in rolled]


def test_a_jittered_batch_is_the_batch_rolled_by_at_most_its_share_of_the_shorter_side_and_maybe_mirrored():
    images = torch.randn(3, 2, 8, 11, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    seen = [jittered(images, 0.25, generator) for _ in range(60)]  # 2 pixels of the shorter side's 8
    placements = _placements(images, 2)
    assert all(any(torch.equal(s, p) for p in placements) for s in seen)
    assert len({tuple(s.flatten()[:20].tolist()) for s in seen}) > 10  # it does move, not once but many ways
    unmirrored = placements[:len(placements) // 2]
    mirrored = sum(not any(torch.equal(s, p) for p in unmirrored) for s in seen)
    assert 10 < mirrored < 50  # about half mirrored


def test_the_jitter_is_one_stream_per_generator_and_leaves_other_shapes_alone():
    images = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    first = [jittered(images, 0.4, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(first[0], first[1])
    vectors = torch.randn(4, 10)
    assert jittered(vectors, 0.4, torch.Generator().manual_seed(5)) is vectors


def test_jittered_inputs_still_match_the_running_statistics_and_differ_from_unjittered_ones(tmp_path):
    model = cnn_with_known_statistics()

    def made(jitter: float, steps: int) -> torch.Tensor:
        settings = RefinementSettings(num_inputs=16, input_steps=steps, input_jitter=jitter)
        return synthetic_inputs(model, [1, 8, 8], settings, seed=0, trainer_factory=trainer_factory(tmp_path))

    noise, plain, jittered_inputs = made(0, 0), made(0, 100), made(0.125, 100)
    assert _bn_gap(model, jittered_inputs) < 0.5 * _bn_gap(model, noise)
    assert not torch.equal(jittered_inputs, plain)
    assert torch.equal(made(0.125, 100), jittered_inputs)  # the same seed makes the same inputs


@pytest.mark.parametrize("value", [-0.1, 0.5, True, "0.1"])
def test_a_bad_jitter_is_refused(value):
    with pytest.raises(ConfigError, match="input_jitter"):
        RefinementSettings(input_jitter=value)


def test_the_jitter_is_off_by_default_and_a_set_jitter_holds_at_every_rate():
    assert RefinementSettings().input_jitter == 0
    jittered_settings = RefinementSettings(input_jitter=0.0625)
    assert all(jittered_settings.for_bits_per_weight(bits).input_jitter == 0.0625 for bits in (0.9, 1.9, 3.6))
