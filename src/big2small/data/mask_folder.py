"""Segmentation data from a folder of image/mask file pairs (users' own data; `data=membrane` is one of them).

Layout: `root/<image_dir>/NAME.png` and `root/<mask_dir>/NAME.png` (any common image format; pairs share the
file stem). The pairs are split once with a seeded shuffle into train / val / test by count. Training samples
are random crops with random horizontal and vertical flips; validation and test use the full images.
Masks: with `num_classes: 1` a pixel is foreground where the mask value is > `binary_threshold`; with
`num_classes: K >= 2` mask values are class indices 0..K-1 (grey or palette PNGs).
The images are decoded in setup() and kept in memory, so a corrupt file fails before training starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from big2small.data.image_files import list_images, read_image
from big2small.data.in_memory import InMemoryDataModule
from big2small.errors import ConfigError


class RandomCrops(Dataset):
    """`crops_per_image` random crops (with random flips) per image and epoch; image and mask cropped alike."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, crop_size: int | None, crops_per_image: int,
                 flips: bool) -> None:
        self.images, self.masks = images, masks
        self.crop_size, self.crops_per_image, self.flips = crop_size, crops_per_image, flips

    def __len__(self) -> int:
        return len(self.images) * self.crops_per_image

    def __getitem__(self, index: int):
        image, mask = self.images[index % len(self.images)], self.masks[index % len(self.images)]
        if self.crop_size:
            height, width = mask.shape
            top = int(torch.randint(0, height - self.crop_size + 1, ()))
            left = int(torch.randint(0, width - self.crop_size + 1, ()))
            image = image[:, top : top + self.crop_size, left : left + self.crop_size]
            mask = mask[top : top + self.crop_size, left : left + self.crop_size]
        if self.flips:
            if torch.rand(()) < 0.5:
                image, mask = image.flip(-1), mask.flip(-1)
            if torch.rand(()) < 0.5:
                image, mask = image.flip(-2), mask.flip(-2)
        return image.contiguous(), mask.contiguous()


class MaskFolderDataModule(InMemoryDataModule):
    targets = "masks"  # one class per pixel (tasks/base.py)

    def __init__(
        self,
        name: str = "mask_folder",
        root: str = "data/masks",
        image_dir: str = "image",
        mask_dir: str = "label",
        num_classes: int = 1,
        in_channels: int = 3,
        binary_threshold: int = 127,
        val_size: int = 0,
        test_size: int = 1,
        split_seed: int = 0,
        crop_size: int | None = 256,
        crops_per_image: int = 1,
        flips: bool = True,
        mean: float = 0.5,
        std: float = 0.25,
        batch_size: int = 4,
        eval_batch_size: int = 4,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed=split_seed)
        if int(num_classes) < 1 or int(in_channels) not in (1, 3):
            raise ConfigError(f"data: need num_classes >= 1 and in_channels 1 (grey) or 3 (RGB) "
                              f"(got {num_classes}, {in_channels})")
        if crop_size is not None and int(crop_size) < 1 or int(crops_per_image) < 1:
            raise ConfigError(f"data: crop_size (or null) and crops_per_image must be >= 1 "
                              f"(got {crop_size}, {crops_per_image})")
        if not float(std) > 0:
            raise ConfigError(f"data: std must be > 0 (got {std})")
        self.name, self.root = name, Path(root)
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.binary_threshold, self.split_seed = int(binary_threshold), int(split_seed)
        self.crop_size = None if crop_size is None else int(crop_size)
        self.crops_per_image, self.flips = int(crops_per_image), bool(flips)
        self.mean, self.std = float(mean), float(std)
        self.pairs = self._pair_files(self.root / image_dir, self.root / mask_dir)
        self.split_names = self._split(len(self.pairs), int(val_size), int(test_size))

    @staticmethod
    def _pair_files(image_folder: Path, mask_folder: Path) -> list[tuple[Path, Path]]:
        images, masks = list_images(image_folder), list_images(mask_folder)
        if set(images) != set(masks):
            unmatched = sorted(set(images) ^ set(masks))
            raise ConfigError(f"data: {len(images)} images in {image_folder} but {len(masks)} masks in {mask_folder}; "
                              f"unmatched names: {unmatched[:5]}{' ...' if len(unmatched) > 5 else ''}")
        if not images:
            raise ConfigError(f"data: no image files in {image_folder}")
        return [(images[stem], masks[stem]) for stem in images]

    def _split(self, count: int, val_size: int, test_size: int) -> dict[str, list[int]]:
        if val_size < 0 or test_size < 1 or val_size + test_size >= count:
            raise ConfigError(f"data: val_size {val_size} (>= 0) + test_size {test_size} (>= 1) must leave training "
                              f"pairs out of {count}")
        order = np.random.default_rng(self.split_seed).permutation(count).tolist()
        return {"test": sorted(order[:test_size]), "val": sorted(order[test_size : test_size + val_size]),
                "train": sorted(order[test_size + val_size :])}

    def _load(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if not indices:  # a split the user asked to be empty (val_size: 0)
            return torch.zeros(0, self.in_channels, 0, 0), torch.zeros(0, 0, 0, dtype=torch.int64)
        images, masks = [], []
        for index in indices:
            image_path, mask_path = self.pairs[index]
            image = read_image(image_path, "L" if self.in_channels == 1 else "RGB")
            mask = read_image(mask_path, "L" if self.num_classes == 1 else None)
            if mask.ndim != 2:
                raise ConfigError(f"data: mask {mask_path} must have one channel (class indices), has shape {mask.shape}")
            if image.shape[:2] != mask.shape:
                raise ConfigError(f"data: {image_path} is {image.shape[:2]} but its mask {mask_path} is {mask.shape}")
            if self.num_classes == 1:
                mask = (mask > self.binary_threshold).astype(np.uint8)
            elif mask.max() >= self.num_classes:
                raise ConfigError(f"data: mask {mask_path} has class {mask.max()} but num_classes is {self.num_classes}")
            if self.crop_size and min(mask.shape) < self.crop_size:
                raise ConfigError(f"data: {image_path} ({mask.shape}) is smaller than crop_size {self.crop_size}")
            images.append(torch.from_numpy(image.reshape(*image.shape[:2], -1)).permute(2, 0, 1))
            masks.append(torch.from_numpy(mask.astype(np.int64)))
        if len({tuple(m.shape) for m in masks}) > 1:
            raise ConfigError("data: images of one folder must share one size (crop or resize them beforehand)")
        scaled = (torch.stack(images).float() / 255.0 - self.mean) / self.std
        return scaled, torch.stack(masks)

    def input_shape(self) -> list[int] | None:
        """The training crop; without crops the image size varies with the files, so it is not known here."""
        return [self.in_channels, self.crop_size, self.crop_size] if self.crop_size else None

    def load_splits(self) -> dict[str, TensorDataset]:
        return {split: TensorDataset(*self._load(indices)) for split, indices in self.split_names.items()}

    def training_set(self) -> RandomCrops:
        return RandomCrops(*self.splits["train"].tensors, self.crop_size, self.crops_per_image, self.flips)
