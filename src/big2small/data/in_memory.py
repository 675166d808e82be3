"""The part every data module here shares: splits decoded once into memory, and the loaders over them.

A subclass builds its splits in `load_splits()` ("train" and "test", plus the optional validation split named by
`val_split`, empty when the user asked for none); this class serves them to Lightning. Decoding everything in
setup() means a corrupt file fails before any training starts.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from big2small.errors import ConfigError


class InMemoryDataModule(L.LightningDataModule):
    val_split = "val"  # the split validation reads (a held-out part of the training images, for some data sets)

    def __init__(self, batch_size: int, eval_batch_size: int, shuffle_seed: int) -> None:
        super().__init__()
        if int(batch_size) < 1 or int(eval_batch_size) < 1:
            raise ConfigError(f"data: batch sizes must be >= 1 (got {batch_size}, {eval_batch_size})")
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.shuffle_seed = int(shuffle_seed)  # the training order depends on this seed alone
        self.splits: dict[str, Dataset] = {}

    def load_splits(self) -> dict[str, Dataset]:
        raise NotImplementedError

    def input_shape(self) -> list[int] | None:
        """One model input's shape without the batch dim, from the settings alone (no image is read); None when
        only the images would tell. Data-free compressors that run the model on synthetic inputs use it."""
        return None

    def training_set(self) -> Dataset:
        """What training batches are drawn from; subclasses wrap it with their augmentation."""
        return self.splits["train"]

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = self.load_splits()

    def train_dataloader(self) -> DataLoader:
        self.setup()
        generator = torch.Generator().manual_seed(self.shuffle_seed)
        return DataLoader(self.training_set(), batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader | list:
        """The validation split, or no loader (so Lightning skips validation) when it is empty."""
        self.setup()
        split = self.splits.get(self.val_split)
        if split is None or len(split) == 0:
            return []
        return DataLoader(split, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return DataLoader(self.splits["test"], batch_size=self.eval_batch_size)

    def calibration_images(self, count: int) -> torch.Tensor:
        """Unlabelled training images for compressors that use data (never the test split)."""
        self.setup()
        return self.splits["train"][:count][0]  # every split is sliceable (TensorDataset, NormalisedImages)


def check_fixed_classes(data_name: str, num_classes: int, in_channels: int, fixed: tuple[int, int]) -> None:
    """A data set whose class and channel counts are facts of the data, not settings."""
    if (num_classes, in_channels) != fixed:
        raise ConfigError(f"data: {data_name} has num_classes={fixed[0]} and in_channels={fixed[1]}; "
                          "do not override them")


def channel_normalisation(mean, std, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std as (1, channels, 1, 1) tensors, from one value per channel or one value (a number or
    a one-item list) for every channel; std > 0."""
    values = [list(v) if isinstance(v, list | tuple) else [v] for v in (mean, std)]
    values = [v * channels if len(v) == 1 else v for v in values]
    try:
        numbers = [[float(x) for x in v if not isinstance(x, bool | str)] for v in values]
    except (TypeError, ValueError):
        numbers = [[], []]
    if any(len(n) != channels for n in numbers) or any(s <= 0 for s in numbers[1]):
        raise ConfigError(f"data: mean and std need {channels} numbers each (or one for every channel), std > 0 "
                          f"(got {mean}, {std})")
    return tuple(torch.tensor(n).view(1, channels, 1, 1) for n in numbers)
