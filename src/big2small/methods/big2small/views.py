"""Fresh views of the refinement inputs: every batch of images is seen randomly flipped and shifted, so a few
hundred synthetic images give the refinement a new input at every step instead of the same ones again.

A view of image x is x mirrored left-right with probability 1/2, then shifted by (dy, dx) pixels, each drawn
uniformly from [-SHIFT_FRACTION * size, SHIFT_FRACTION * size], with the uncovered border filled by reflection.
Only image batches (N, C, H, W) are viewed; any other input is passed on as it is.
"""

from __future__ import annotations

import torch
from torch.nn import functional

SHIFT_FRACTION = 0.125  # 4 pixels on a 32 x 32 image, the shift of the usual CIFAR training crops


def random_views(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random view of each image of the batch `images` (see the module docstring)."""
    if images.dim() != 4:
        return images
    count, _, height, width = images.shape
    flip = torch.rand(count, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    pad_y, pad_x = int(SHIFT_FRACTION * height), int(SHIFT_FRACTION * width)
    if pad_y == 0 and pad_x == 0:
        return images
    padded = functional.pad(images, (pad_x, pad_x, pad_y, pad_y), mode="reflect")  # pads < sizes: reflectable
    top = torch.randint(0, 2 * pad_y + 1, (count,), generator=generator)
    left = torch.randint(0, 2 * pad_x + 1, (count,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]  # each image's window, as one gather
    columns = (left[:, None] + torch.arange(width))[:, None, None, :]
    return padded[torch.arange(count)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                  rows, columns]
