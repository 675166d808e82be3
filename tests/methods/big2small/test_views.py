import torch

from big2small.methods.big2small.refinement import hard_sample_mean
from big2small.methods.big2small.views import random_views


def _images():
    return torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_each_view_is_its_image_flipped_or_not_and_shifted_by_at_most_four_pixels():
    images = _images()
    views = random_views(images, torch.Generator().manual_seed(1))
    assert views.shape == images.shape
    flipped_count = 0
    for image, view in zip(images, views, strict=True):
        matches = [(flip, dy, dx) for flip in (False, True) for dy in range(-4, 5) for dx in range(-4, 5)
                   if torch.equal(view[:, 4 + dy:28 + dy, 4 + dx:28 + dx],
                                  (image.flip(-1) if flip else image)[:, 4:28, 4:28])]
        assert len(matches) == 1  # exactly one flip and shift explains the view's centre
        flipped_count += matches[0][0]
    assert 16 <= flipped_count <= 48  # about half are mirrored
    assert not torch.equal(views, images)


def test_views_are_reproducible_from_the_generator_and_leave_other_inputs_alone():
    images = _images()
    first = random_views(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, random_views(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, random_views(images, torch.Generator().manual_seed(6)))
    vectors = torch.randn(8, 48)
    assert random_views(vectors, torch.Generator().manual_seed(5)) is vectors


def test_hard_sample_weighting_counts_the_worse_matched_inputs_more():
    losses = torch.tensor([1.0, 1.0, 4.0], requires_grad=True)
    assert torch.isclose(hard_sample_mean(losses, 0.0), losses.mean())
    weighted = hard_sample_mean(losses, 1.0)
    weighted.backward()
    # weights (1, 1, 4) / 2 scaled to mean 1: (0.5, 0.5, 2); the gradient is weight / 3 and holds no weight term
    torch.testing.assert_close(losses.grad, torch.tensor([0.5, 0.5, 2.0]) / 3)
    torch.testing.assert_close(weighted, torch.tensor((0.5 + 0.5 + 8.0) / 3))
