"""Procedural shapes: reproducible for a seed, all classes present, binary variant."""

from __future__ import annotations

import pytest
import torch

from big2small.data.shapes import ShapesDataModule
from big2small.errors import ConfigError


def test_same_seed_same_images_and_all_classes_present():
    first, second = ShapesDataModule(train_size=16, test_size=8), ShapesDataModule(train_size=16, test_size=8)
    first.setup()
    second.setup()
    for split in ("train", "val", "test"):
        for a, b in zip(first.splits[split].tensors, second.splits[split].tensors, strict=True):
            assert torch.equal(a, b)
    images, masks = first.splits["train"].tensors
    assert images.shape == (16, 3, 32, 32) and masks.shape == (16, 32, 32)
    assert set(masks.unique().tolist()) == {0, 1, 2, 3}
    other = ShapesDataModule(train_size=16, test_size=8, seed=1)
    other.setup()
    assert not torch.equal(other.splits["train"].tensors[1], masks)


def test_binary_variant_merges_shapes():
    data = ShapesDataModule(train_size=8, val_size=0, test_size=4, num_classes=1)
    data.setup()
    assert set(data.splits["train"].tensors[1].unique().tolist()) == {0, 1}
    assert data.val_dataloader() == []


def test_invalid_num_classes():
    with pytest.raises(ConfigError, match="num_classes"):
        ShapesDataModule(num_classes=3)
