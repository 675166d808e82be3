"""Mask-folder segmentation data (membrane is one): pairing, split, crops, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from big2small.data.mask_folder import MaskFolderDataModule
from big2small.errors import ConfigError


def write_pairs(root, count: int, size: int = 32, mask_values=(0, 255)) -> None:
    (root / "image").mkdir(parents=True)
    (root / "label").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(root / "image" / f"{index}.png")
        mask = rng.choice(np.array(mask_values, dtype=np.uint8), size=(size, size))
        Image.fromarray(mask).save(root / "label" / f"{index}.png")


def module(root, **overrides) -> MaskFolderDataModule:
    settings = dict(root=str(root), in_channels=1, num_classes=1, val_size=1, test_size=2, crop_size=16,
                    crops_per_image=3, batch_size=4)
    return MaskFolderDataModule(**{**settings, **overrides})


def test_split_crops_and_binary_masks(tmp_path):
    write_pairs(tmp_path, 7)
    data = module(tmp_path)
    data.setup()
    assert {k: len(v) for k, v in data.split_names.items()} == {"test": 2, "val": 1, "train": 4}
    assert set(data.split_names["test"]).isdisjoint(data.split_names["train"])
    images, masks = next(iter(data.train_dataloader()))
    assert images.shape == (4, 1, 16, 16) and masks.shape == (4, 16, 16)
    assert set(masks.unique().tolist()) <= {0, 1}
    assert len(data.train_dataloader().dataset) == 4 * 3
    test_images, test_masks = next(iter(data.test_dataloader()))
    assert test_images.shape == (2, 1, 32, 32)  # evaluation sees whole images
    assert data.calibration_images(3).shape == (3, 1, 32, 32)


def test_no_validation_pairs_means_no_validation(tmp_path):
    write_pairs(tmp_path, 4)
    data = module(tmp_path, val_size=0)  # the mask_folder config's default
    data.setup()
    assert data.val_dataloader() == [] and len(data.train_dataloader().dataset) == 2 * 3  # 4 pairs, 2 for testing


def test_split_is_fixed_by_seed(tmp_path):
    write_pairs(tmp_path, 9)
    assert module(tmp_path).split_names == module(tmp_path).split_names
    assert module(tmp_path).split_names != module(tmp_path, split_seed=1).split_names


def test_image_mask_count_mismatch_is_a_clear_error(tmp_path):
    write_pairs(tmp_path, 5)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "image" / "extra.png")
    with pytest.raises(ConfigError, match=r"6 images .* but 5 masks .*extra"):
        module(tmp_path)


def test_corrupt_image_is_a_clear_error(tmp_path):
    write_pairs(tmp_path, 5)
    (tmp_path / "image" / "3.png").write_bytes(b"not a png at all")
    data = module(tmp_path)
    with pytest.raises(ConfigError, match=r"cannot read image .*3\.png"):
        data.setup()


def test_class_index_masks_above_num_classes_are_rejected(tmp_path):
    write_pairs(tmp_path, 5, mask_values=(0, 1, 2))
    module(tmp_path, num_classes=3).setup()
    with pytest.raises(ConfigError, match="has class 2 but num_classes is 2"):
        module(tmp_path, num_classes=2).setup()


def test_bad_split_sizes_fail_at_construction(tmp_path):
    write_pairs(tmp_path, 3)
    with pytest.raises(ConfigError, match="must leave training pairs"):
        module(tmp_path, val_size=1, test_size=2)


def test_membrane_split_from_shared(shared_dir):
    data = MaskFolderDataModule(root=str(shared_dir / "data/membrane"), in_channels=1, num_classes=1,
                                val_size=5, test_size=5, crop_size=96)
    assert [len(data.split_names[s]) for s in ("train", "val", "test")] == [20, 5, 5]
    data.setup()
    images, masks = data.splits["test"].tensors
    assert images.shape == (5, 1, 512, 512)
    # About 78 % of the label pixels mark cell interior (255 -> class 1).
    assert 0.6 < float(masks.float().mean()) < 0.9
    assert torch.isfinite(images).all()
