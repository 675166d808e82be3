import torch

from big2small.methods.big2small.matching import hard_sample_mean
from big2small.methods.big2small.views import random_views, views_of


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


def test_a_mixup_view_is_each_input_on_the_segment_to_another_input_of_the_batch():
    images = _images()[:16]
    views = views_of(images, "mixup", torch.Generator().manual_seed(2))
    flat, mixed = images.flatten(1), views.flatten(1)
    own_shares = []
    for view in mixed:
        # the view is lam x_i + (1 - lam) x_j for one pair (i, j) of the batch and lam in [0, 1]
        fits = []
        for i in range(len(flat)):
            for j in range(len(flat)):
                gap = flat[i] - flat[j]
                share = 1.0 if i == j else float((view - flat[j]) @ gap / (gap @ gap))
                if -1e-5 <= share <= 1 + 1e-5 and torch.allclose(share * flat[i] + (1 - share) * flat[j], view,
                                                                  atol=1e-5):
                    fits.append(max(share, 1 - share))
        assert fits
        own_shares.append(fits[0])
    assert 0.55 < sum(own_shares) / len(own_shares) < 0.95  # uniform shares: the larger one averages 3/4
    assert torch.equal(views, views_of(images, "mixup", torch.Generator().manual_seed(2)))


def test_a_cutmix_view_is_its_image_with_one_box_from_another_image_of_the_batch():
    images = _images()
    views = views_of(images, "cutmix", torch.Generator().manual_seed(3))
    replaced_shares = []
    for image, view in zip(images, views, strict=True):
        changed = (view != image).any(dim=0)
        if changed.any():
            rows, columns = changed.any(dim=1).nonzero().flatten(), changed.any(dim=0).nonzero().flatten()
            box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(columns[0]), int(columns[-1]) + 1))
            donors = [other for other in images if torch.equal(view[:, box[0], box[1]], other[:, box[0], box[1]])]
            assert donors  # the box comes whole from one image of the batch
            outside = torch.ones_like(changed)
            outside[box] = False
            assert torch.equal(view[:, outside], image[:, outside])  # and nothing outside it changed
        replaced_shares.append(float(changed.float().mean()))
    assert 0.3 < sum(replaced_shares) / len(replaced_shares) < 0.7  # a uniform share of the area: 1/2 on average
    vectors = torch.randn(8, 48)
    assert views_of(vectors, "cutmix", torch.Generator().manual_seed(3)) is vectors


def test_hard_sample_weighting_counts_the_worse_matched_inputs_more():
    losses = torch.tensor([1.0, 1.0, 4.0], requires_grad=True)
    assert torch.isclose(hard_sample_mean(losses, 0.0), losses.mean())
    weighted = hard_sample_mean(losses, 1.0)
    weighted.backward()
    # weights (1, 1, 4) / 2 scaled to mean 1: (0.5, 0.5, 2); the gradient is weight / 3 and holds no weight term
    torch.testing.assert_close(losses.grad, torch.tensor([0.5, 0.5, 2.0]) / 3)
    torch.testing.assert_close(weighted, torch.tensor((0.5 + 0.5 + 8.0) / 3))
