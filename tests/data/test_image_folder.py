"""Class-folder image data: classes from folder names, resizing, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from big2small.data.image_folder import ImageFolderDataModule
from big2small.errors import ConfigError


def write_tree(root, classes=("cat", "dog"), per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")


def test_loads_resizes_and_labels_by_folder(tmp_path):
    write_tree(tmp_path)
    data = ImageFolderDataModule(root=str(tmp_path), num_classes=2, image_size=16, heldout_size=2)
    data.setup()
    assert data.classes == ["cat", "dog"]
    assert [len(data.splits[s]) for s in ("train", "heldout", "test")] == [4, 2, 6]
    images, labels = data.splits["test"].tensors
    assert images.shape == (6, 3, 16, 16)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("in_channels", [1, 3])
def test_one_mean_and_std_serve_every_channel(tmp_path, in_channels):
    write_tree(tmp_path)
    data = ImageFolderDataModule(root=str(tmp_path), num_classes=2, image_size=16, in_channels=in_channels,
                                 mean=0.5, std=[0.25])
    data.setup()
    images, _ = data.splits["test"].tensors
    assert images.shape[1] == in_channels and float(images.min()) >= -2 and float(images.max()) <= 2
    with pytest.raises(ConfigError, match="mean and std need 3 numbers each"):
        ImageFolderDataModule(root=str(tmp_path), num_classes=2, mean=[0.5, 0.5], std=0.25)
    with pytest.raises(ConfigError, match="mean and std need 3 numbers each"):
        ImageFolderDataModule(root=str(tmp_path), num_classes=2, mean="abc", std=0.25)  # not three values


def test_num_classes_must_match_the_folders(tmp_path):
    write_tree(tmp_path)
    with pytest.raises(ConfigError, match="num_classes is 10 but .* has 2 class folders"):
        ImageFolderDataModule(root=str(tmp_path), num_classes=10)


def test_corrupt_image_is_a_clear_error(tmp_path):
    write_tree(tmp_path)
    (tmp_path / "train" / "dog" / "1.png").write_bytes(b"\x89PNG broken")
    data = ImageFolderDataModule(root=str(tmp_path), num_classes=2)
    with pytest.raises(ConfigError, match=r"cannot read image .*dog.1\.png"):
        data.setup()
