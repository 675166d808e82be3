"""CIFAR-10 npz loading: layout detection, normalisation, held-out split, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from big2small.data.cifar10 import Cifar10DataModule
from big2small.errors import ConfigError


def write_npz(path, count: int, label_count: int | None = None) -> None:
    rng = np.random.default_rng(count)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    np.savez(path, images=images, labels=rng.integers(0, 10, label_count or count).astype(np.int64))


def test_npz_layout_normalisation_and_splits(tmp_path):
    write_npz(tmp_path / "test.npz", 12)
    write_npz(tmp_path / "train_small.npz", 20)
    data = Cifar10DataModule(root=str(tmp_path), heldout_size=5, eval_batch_size=4)
    assert data.train_file == "train_small.npz"  # the single train*.npz is found without configuration
    data.setup()
    assert [len(data.splits[s]) for s in ("train", "heldout", "test")] == [15, 5, 12]
    raw = np.load(tmp_path / "test.npz")["images"][0]
    expected = (torch.from_numpy(raw).permute(2, 0, 1).float() / 255 - data.mean[0]) / data.std[0]
    assert torch.allclose(data.splits["test"].tensors[0][0], expected)
    # Each image is normalised as it is read, to the very values of normalising them all at once.
    assert all(torch.equal(data.splits["test"][i][0], data.splits["test"].tensors[0][i]) for i in range(12))
    assert data.splits["train"].images.dtype == torch.uint8  # kept at a quarter of their fp32 memory
    assert len(data.val_dataloader().dataset) == 5
    assert data.calibration_images(3).shape == (3, 3, 32, 32)
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape[1:] == (3, 32, 32) and labels.dtype == torch.int64


def test_without_heldout_there_is_no_validation(tmp_path):
    write_npz(tmp_path / "test.npz", 4)
    write_npz(tmp_path / "train.npz", 8)
    data = Cifar10DataModule(root=str(tmp_path))
    assert data.val_dataloader() == []


def test_label_count_mismatch_is_a_clear_error(tmp_path):
    write_npz(tmp_path / "test.npz", 6, label_count=5)
    write_npz(tmp_path / "train.npz", 8)
    with pytest.raises(ConfigError, match=r"6 images but labels of shape \(5,\)"):
        Cifar10DataModule(root=str(tmp_path)).setup()


def test_corrupt_npz_is_a_clear_error(tmp_path):
    (tmp_path / "test.npz").write_bytes(b"garbage")
    write_npz(tmp_path / "train.npz", 8)
    with pytest.raises(ConfigError, match="not a readable npz"):
        Cifar10DataModule(root=str(tmp_path)).setup()


def test_missing_data_fails_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="no CIFAR-10 under"):
        Cifar10DataModule(root=str(tmp_path / "nowhere"))


def test_shared_copy_is_found(shared_dir):
    data = Cifar10DataModule(root=str(shared_dir / "data/cifar10"))
    assert (data.layout, data.train_file) == ("npz", "train_10k.npz")
