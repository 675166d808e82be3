"""Fresh views of the refinement inputs: every batch is seen changed at random, so a few hundred synthetic inputs
give the refinement a new input at every step instead of the same ones again.

- flip_shift: image x mirrored left-right with probability 1/2, then shifted by (dy, dx) pixels, each drawn
  uniformly from [-SHIFT_FRACTION * size, SHIFT_FRACTION * size], the uncovered border filled by reflection. Only
  image batches (N, C, H, W) are viewed; any other input is passed on as it is.
- mixup: input i becomes lam x_i + (1 - lam) x_j, with x_j another input of the batch (a random pairing) and lam
  drawn uniformly from [0, 1] per input, as mixup (Zhang et al. 2018) mixes training images with Beta(1, 1).
- cutmix: a random box of image i, of a uniform share of its area, is replaced by the same box of image j (Yun et
  al. 2019); each pixel keeps the local statistics of one image. Only image batches; other inputs pass as they are.
"""

from __future__ import annotations

import torch
from torch.nn import functional

KINDS = ("none", "flip_shift", "mixup", "cutmix")  # the refinement's `views` setting

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


def views_of(images: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """One random view of the batch `images` of the given kind (one of KINDS; see the module docstring)."""
    if kind == "flip_shift":
        return random_views(images, generator)
    if kind == "mixup":
        return mixed_inputs(images, generator)
    if kind == "cutmix":
        return cut_and_mixed_images(images, generator)
    return images


def mixed_inputs(inputs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each input mixed with a randomly paired input of the batch, at a uniform share of its own."""
    partners = inputs[torch.randperm(len(inputs), generator=generator)]
    own = torch.rand(len(inputs), generator=generator).to(inputs.dtype).reshape(-1, *[1] * (inputs.dim() - 1))
    return own * inputs + (1 - own) * partners


def cut_and_mixed_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image with a random box, of a uniform share of its area, taken from a randomly paired image."""
    if images.dim() != 4:
        return images
    count, _, height, width = images.shape
    partners = images[torch.randperm(count, generator=generator)]
    side = torch.rand(count, generator=generator).sqrt()  # a box of side sqrt(u) x each size has share u of the area
    box_h, box_w = (side * height).round().long(), (side * width).round().long()
    top = (torch.rand(count, generator=generator) * (height - box_h + 1)).long()
    left = (torch.rand(count, generator=generator) * (width - box_w + 1)).long()
    rows = torch.arange(height)[None, :]
    columns = torch.arange(width)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    inside_columns = (columns >= left[:, None]) & (columns < (left + box_w)[:, None])
    box = (inside_rows[:, :, None] & inside_columns[:, None, :])[:, None]
    return torch.where(box, partners, images)
