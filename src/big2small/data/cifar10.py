"""CIFAR-10 from a local folder: the npz layout (`test.npz` + a training file) or torchvision's own format.

The npz layout holds `images` (uint8, N x 32 x 32 x 3, RGB) and `labels` (int64). A folder with torchvision's
`cifar-10-batches-py/` is read through torchvision, which also downloads it when `download: true` (for users
online; nothing is ever downloaded otherwise). Pixels are scaled to [0, 1] and normalised with `mean`/`std`:
the values the model was trained with, which the pretrained CIFAR ResNets need to score as published.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from big2small.data.in_memory import InMemoryDataModule, channel_normalisation, check_fixed_classes
from big2small.data.splits import split_indices
from big2small.errors import ConfigError

TORCHVISION_FOLDER = "cifar-10-batches-py"
# The normalisation the pretrained CIFAR ResNet checkpoints were trained with (ImageNet statistics).
CHECKPOINT_MEAN = (0.485, 0.456, 0.406)
CHECKPOINT_STD = (0.229, 0.224, 0.225)


def read_npz_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 NHWC, labels int64) from one npz file, with errors that name the file and the problem."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            contents = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ConfigError(f"data: {path} is not a readable npz file: {error}") from None
    if "images" not in contents or "labels" not in contents:
        raise ConfigError(f"data: {path} must hold arrays 'images' and 'labels' (has {sorted(contents)})")
    images, labels = contents["images"], contents["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"data: {path}: 'images' must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ConfigError(f"data: {path}: {len(images)} images but labels of shape {labels.shape}")
    return images, labels.astype(np.int64)


def read_torchvision_split(root: Path, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(str(root), train=train, download=download)
    except RuntimeError as error:
        raise ConfigError(f"data: cannot read CIFAR-10 from {root}: {error}") from None
    return np.asarray(dataset.data, dtype=np.uint8), np.asarray(dataset.targets, dtype=np.int64)


class NormalisedImages(Dataset):
    """uint8 images (N x H x W x 3) kept as they are, a quarter of their fp32 memory, each scaled to [0, 1] and
    normalised with `mean` and `std` (per channel) when it is read: the same values as normalising them all at once."""

    def __init__(self, images_uint8_nhwc: np.ndarray, labels: np.ndarray, mean: torch.Tensor,
                 std: torch.Tensor) -> None:
        self.images = torch.from_numpy(images_uint8_nhwc).permute(0, 3, 1, 2)
        self.labels = torch.from_numpy(labels)
        self.mean, self.std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | slice):
        """(image, label), or with a slice (images, labels) normalised in one batched op, as a TensorDataset gives."""
        images = self.images[index].float().div_(255.0)
        return ((images - self.mean) / self.std).contiguous(), self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(every image normalised, labels), as a TensorDataset holds them: for callers that want them all at once."""
        return self[:]


class AugmentedImages(Dataset):
    """Training images with the standard CIFAR augmentation: 4-pixel padded random crops and horizontal flips."""

    def __init__(self, images: Dataset, padding: int = 4) -> None:
        self.images, self.padding = images, padding

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, label = self.images[index]
        if self.padding:
            size = image.shape[-2:]
            padded = torch.nn.functional.pad(image, [self.padding] * 4)
            top, left = torch.randint(0, 2 * self.padding + 1, (2,)).tolist()
            image = padded[:, top : top + size[0], left : left + size[1]]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, label


class Cifar10DataModule(InMemoryDataModule):
    targets = "labels"  # one class per image (tasks/base.py)
    num_classes = 10
    in_channels = 3

    def input_shape(self) -> list[int]:
        return [3, 32, 32]
    val_split = "heldout"

    def __init__(
        self,
        name: str = "cifar10",
        root: str = "data/cifar10",
        train_file: str | None = None,
        test_file: str = "test.npz",
        download: bool = False,
        mean: tuple[float, ...] | list[float] = CHECKPOINT_MEAN,
        std: tuple[float, ...] | list[float] = CHECKPOINT_STD,
        augment: bool = True,
        heldout_size: int = 0,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed=split_seed)
        check_fixed_classes("cifar10", num_classes, in_channels, (10, 3))
        self.mean, self.std = channel_normalisation(mean, std, 3)
        if int(heldout_size) < 0:
            raise ConfigError(f"data: heldout_size must be >= 0 (got {heldout_size})")
        self.name, self.root, self.download = name, Path(root), bool(download)
        self.train_file, self.test_file = train_file, test_file
        self.layout = self._detect_layout()
        self.augment, self.heldout_size, self.split_seed = bool(augment), int(heldout_size), int(split_seed)

    def _detect_layout(self) -> str:
        """'npz' or 'torchvision', checked at construction so a wrong root fails before any work."""
        if (self.root / self.test_file).is_file():
            self.train_file = self.train_file or self._find_train_file()
            if not (self.root / self.train_file).is_file():
                raise ConfigError(f"data: {self.root} has {self.test_file} but no training file {self.train_file}")
            return "npz"
        if (self.root / TORCHVISION_FOLDER).is_dir() or self.download:
            return "torchvision"
        raise ConfigError(
            f"data: no CIFAR-10 under {self.root}: expected {self.test_file} + {self.train_file} (npz layout) or "
            f"{TORCHVISION_FOLDER}/ (torchvision layout); set data.root, or data.download=true to fetch it"
        )

    def _find_train_file(self) -> str:
        """train.npz, or else the one train*.npz in root (e.g. a subset such as train_10k.npz)."""
        if (self.root / "train.npz").is_file():
            return "train.npz"
        candidates = sorted(path.name for path in self.root.glob("train*.npz"))
        if len(candidates) != 1:
            raise ConfigError(f"data: cannot tell the training file in {self.root} (found {candidates or 'none'}); "
                              "set data.train_file")
        return candidates[0]

    def _read(self, train: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.layout == "npz":
            return read_npz_split(self.root / (self.train_file if train else self.test_file))
        return read_torchvision_split(self.root, train, self.download)

    def prepare_data(self) -> None:
        if self.layout == "torchvision" and self.download:
            read_torchvision_split(self.root, True, True)
            read_torchvision_split(self.root, False, True)

    def load_splits(self) -> dict[str, NormalisedImages]:
        train_images, train_labels = self._read(train=True)
        test_images, test_labels = self._read(train=False)
        if self.heldout_size >= len(train_labels):
            raise ConfigError(f"data: heldout_size {self.heldout_size} leaves no training images "
                              f"(the training split has {len(train_labels)})")
        heldout_fraction = self.heldout_size / len(train_labels)
        parts = split_indices(len(train_labels), {"heldout": heldout_fraction}, self.split_seed)
        return {
            "train": self._images(train_images[parts["rest"]], train_labels[parts["rest"]]),
            "heldout": self._images(train_images[parts["heldout"]], train_labels[parts["heldout"]]),
            "test": self._images(test_images, test_labels),
        }

    def _images(self, images_uint8_nhwc: np.ndarray, labels: np.ndarray) -> NormalisedImages:
        return NormalisedImages(images_uint8_nhwc, labels, self.mean, self.std)

    def training_set(self) -> Dataset:
        return AugmentedImages(self.splits["train"]) if self.augment else self.splits["train"]

