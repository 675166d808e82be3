"""Classification data from class folders (users' own data): root/<split>/<class name>/<image file>.

The class list is the sorted folder names of the training split, and the test split must use the same names.
Images are resized to `image_size` (square), scaled to [0, 1] and normalised per channel with `mean` / `std`.
An optional seeded held-out part of the training split serves choices that look at accuracy (never the test
split). Everything is decoded in setup() and kept in memory, so a corrupt file fails before training starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from big2small.data.image_files import list_images, read_image
from big2small.data.in_memory import InMemoryDataModule, channel_normalisation
from big2small.data.splits import split_indices
from big2small.errors import ConfigError


class ImageFolderDataModule(InMemoryDataModule):
    targets = "labels"  # one class per image (tasks/base.py)
    val_split = "heldout"

    def __init__(
        self,
        name: str = "image_folder",
        root: str = "data/images",
        train_dir: str = "train",
        test_dir: str = "test",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        mean: float | list[float] | tuple[float, ...] = 0.5,
        std: float | list[float] | tuple[float, ...] = 0.25,
        heldout_size: int = 0,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 500,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed=split_seed)
        if int(in_channels) not in (1, 3):
            raise ConfigError(f"data: in_channels must be 1 (grey) or 3 (RGB) (got {in_channels})")
        self.mean, self.std = channel_normalisation(mean, std, int(in_channels))
        if int(image_size) < 1 or int(heldout_size) < 0:
            raise ConfigError(f"data: image_size must be >= 1 and heldout_size >= 0 (got {image_size}, {heldout_size})")
        self.name, self.root = name, Path(root)
        self.in_channels, self.image_size = int(in_channels), int(image_size)
        self.heldout_size, self.split_seed = int(heldout_size), int(split_seed)
        self.classes = self._class_names(self.root / train_dir)
        if len(self.classes) != int(num_classes):
            raise ConfigError(f"data: num_classes is {num_classes} but {self.root / train_dir} has "
                              f"{len(self.classes)} class folders {self.classes[:10]}")
        test_classes = self._class_names(self.root / test_dir)
        if test_classes != self.classes:
            raise ConfigError(f"data: class folders differ between {train_dir} and {test_dir}: "
                              f"{sorted(set(self.classes) ^ set(test_classes))}")
        self.num_classes = len(self.classes)
        self.split_dirs = {"train": self.root / train_dir, "test": self.root / test_dir}

    @staticmethod
    def _class_names(folder: Path) -> list[str]:
        if not folder.is_dir():
            raise ConfigError(f"data: folder not found: {folder}")
        names = sorted(path.name for path in folder.iterdir() if path.is_dir())
        if not names:
            raise ConfigError(f"data: {folder} has no class folders (expected {folder}/<class name>/<image>)")
        return names

    def _load(self, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        mode = "L" if self.in_channels == 1 else "RGB"
        images, labels = [], []
        for label, class_name in enumerate(self.classes):
            for path in list_images(folder / class_name).values():
                pixels = read_image(path, mode)
                if pixels.shape[:2] != (self.image_size, self.image_size):
                    resized = Image.fromarray(pixels).resize((self.image_size, self.image_size), Image.BILINEAR)
                    pixels = np.asarray(resized)
                images.append(pixels.reshape(self.image_size, self.image_size, -1))
                labels.append(label)
        if not images:
            raise ConfigError(f"data: no image files under {folder}")
        batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
        return ((batch - self.mean) / self.std).contiguous(), torch.tensor(labels, dtype=torch.int64)

    def input_shape(self) -> list[int]:
        return [self.in_channels, self.image_size, self.image_size]

    def load_splits(self) -> dict[str, TensorDataset]:
        train_x, train_y = self._load(self.split_dirs["train"])
        if self.heldout_size >= len(train_y):
            raise ConfigError(f"data: heldout_size {self.heldout_size} leaves no training images (of {len(train_y)})")
        parts = split_indices(len(train_y), {"heldout": self.heldout_size / len(train_y)}, self.split_seed)
        return {
            "train": TensorDataset(train_x[parts["rest"]], train_y[parts["rest"]]),
            "heldout": TensorDataset(train_x[parts["heldout"]], train_y[parts["heldout"]]),
            "test": TensorDataset(*self._load(self.split_dirs["test"])),
        }
