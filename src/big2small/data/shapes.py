"""Procedural segmentation images: seeded random discs, squares and triangles on textured backgrounds.

The offline default for task=segmentation: nothing to download, the same images for the same seed. Each image
has a smooth random grating plus noise as background and 1..max_shapes shapes, each filled with its own colour
and noise; later shapes occlude earlier ones in both image and mask. Masks are index maps: 0 background,
1 disc, 2 square, 3 triangle; with `num_classes: 1` the shapes merge into one binary foreground mask.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from big2small.data.in_memory import InMemoryDataModule
from big2small.errors import ConfigError

SHAPE_CLASSES = ("disc", "square", "triangle")


def _shape_mask(kind: int, ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, r: float) -> np.ndarray:
    if kind == 0:
        return (ys - cy) ** 2 + (xs - cx) ** 2 <= r**2
    if kind == 1:
        return (np.abs(ys - cy) <= r * 0.8) & (np.abs(xs - cx) <= r * 0.8)
    # An upright isosceles triangle: apex at (cy - r), base at (cy + r), half-width growing with depth.
    depth = (ys - (cy - r)) / (2 * r)
    return (depth >= 0) & (depth <= 1) & (np.abs(xs - cx) <= depth * r)


def render_shapes(count: int, size: int, max_shapes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 N x 3 x size x size in [0, 1], masks int64 N x size x size) for one seed."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, 3, size, size), np.float32)
    masks = np.zeros((count, size, size), np.int64)
    for n in range(count):
        angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.1, 0.5)
        grating = np.sin(frequency * (np.cos(angle) * xs + np.sin(angle) * ys) + rng.uniform(0, 2 * np.pi))
        # Dark textured background, bright shapes: foreground is visible from intensity, the class only from
        # geometry, so a small net learns the first within a few hundred steps and the second more slowly.
        base = rng.uniform(0.05, 0.35, size=(3, 1, 1))
        image = base + 0.1 * grating + 0.05 * rng.standard_normal((3, size, size))
        for _ in range(rng.integers(1, max_shapes + 1)):
            kind = int(rng.integers(len(SHAPE_CLASSES)))
            r = rng.uniform(0.1, 0.25) * size
            cy, cx = rng.uniform(r, size - r, size=2)
            inside = _shape_mask(kind, ys, xs, cy, cx, r)
            colour = rng.uniform(0.55, 1.0, size=(3, 1))
            image[:, inside] = colour + 0.05 * rng.standard_normal((3, int(inside.sum())))
            masks[n][inside] = kind + 1
        images[n] = image
    return np.clip(images, 0.0, 1.0), masks


class ShapesDataModule(InMemoryDataModule):
    targets = "masks"  # one class per pixel (tasks/base.py)
    in_channels = 3

    def input_shape(self) -> list[int]:
        return [3, self.image_size, self.image_size]

    def __init__(
        self,
        name: str = "shapes",
        image_size: int = 32,
        train_size: int = 256,
        val_size: int = 64,
        test_size: int = 128,
        max_shapes: int = 3,
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_classes: int = len(SHAPE_CLASSES) + 1,
        in_channels: int = 3,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed=seed)
        multiclass = len(SHAPE_CLASSES) + 1
        if int(num_classes) not in (1, multiclass):
            raise ConfigError(f"data: shapes has num_classes {multiclass} (background + {', '.join(SHAPE_CLASSES)}) "
                              f"or 1 (binary foreground mask); got {num_classes}")
        self.num_classes = int(num_classes)
        if int(in_channels) != 3:
            raise ConfigError("data: shapes images have in_channels=3; do not override it")
        if int(image_size) < 16:
            raise ConfigError(f"data: image_size must be >= 16 (got {image_size})")
        if min(int(train_size), int(test_size)) < 1 or int(val_size) < 0:
            raise ConfigError("data: train_size and test_size must be >= 1, val_size >= 0")
        if int(max_shapes) < 1:
            raise ConfigError(f"data: max_shapes must be >= 1 (got {max_shapes})")
        self.name, self.image_size, self.max_shapes = name, int(image_size), int(max_shapes)
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}
        self.binary, self.seed = self.num_classes == 1, int(seed)

    def load_splits(self) -> dict[str, TensorDataset]:
        splits = {}
        for offset, (split, count) in enumerate(self.sizes.items()):
            # One seed per split, so changing one split's size leaves the other splits' images unchanged.
            images, masks = render_shapes(count, self.image_size, self.max_shapes, self.seed * 3 + offset)
            masks = (masks > 0).astype(np.int64) if self.binary else masks
            splits[split] = TensorDataset(torch.from_numpy((images - 0.5) / 0.25), torch.from_numpy(masks))
        return splits
