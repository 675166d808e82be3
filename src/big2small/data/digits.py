"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): the offline default data set."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from big2small.data.in_memory import InMemoryDataModule, check_fixed_classes
from big2small.data.splits import split_indices
from big2small.errors import ConfigError


class DigitsDataModule(InMemoryDataModule):
    targets = "labels"  # one class per image (tasks/base.py)
    num_classes = 10
    in_channels = 1

    def input_shape(self) -> list[int]:
        return [1, 8, 8]

    def __init__(
        self,
        name: str = "digits",
        batch_size: int = 64,
        eval_batch_size: int = 512,
        test_fraction: float = 0.2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_classes: int = 10,
        in_channels: int = 1,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, shuffle_seed=split_seed)
        check_fixed_classes("digits", num_classes, in_channels, (10, 1))
        if not (0 < test_fraction < 1 and 0 <= val_fraction < 1 and test_fraction + val_fraction < 1):
            raise ConfigError("data: test_fraction and val_fraction must lie in (0, 1) and sum to < 1")
        self.name = name
        self.test_fraction, self.val_fraction, self.split_seed = test_fraction, val_fraction, split_seed

    def load_splits(self) -> dict[str, TensorDataset]:
        digits = load_digits()
        # Pixels are 0..16; scale to [0, 1] and centre so the net sees zero-mean inputs.
        images = torch.from_numpy((digits.images / 16.0 - 0.5) / 0.5).float().unsqueeze(1)
        labels = torch.from_numpy(digits.target.astype(np.int64))
        parts = split_indices(len(labels), {"test": self.test_fraction, "val": self.val_fraction}, self.split_seed)
        parts["train"] = parts.pop("rest")
        return {name: TensorDataset(images[idx], labels[idx]) for name, idx in parts.items()}
