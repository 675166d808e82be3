"""Segmentation task: Dice / mIoU on index maps for binary and multi-class masks, and a short training run."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from big2small.errors import ConfigError
from big2small.models.smp_models import segmentation_model
from big2small.tasks.segmentation import SegmentationTask


class MaskData(L.LightningDataModule):
    """Test images whose first channel *is* the mask, so an oracle model can read the answer off the input."""

    def __init__(self, masks: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.num_classes, self.masks = num_classes, masks
        self.images = masks.unsqueeze(1).float()

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.images, self.masks), batch_size=4)

    def test_dataloader(self):
        return DataLoader(TensorDataset(self.images, self.masks), batch_size=3)


class Oracle(nn.Module):
    """Logits that decode to the mask in the input (optionally with class `wrong` predicted everywhere)."""

    def __init__(self, num_outputs: int, wrong: int | None = None) -> None:
        super().__init__()
        self.num_outputs, self.wrong = num_outputs, wrong

    def forward(self, images):
        classes = images[:, 0].long() if self.wrong is None else torch.full_like(images[:, 0], self.wrong).long()
        if self.num_outputs == 1:
            return (classes.float() * 2 - 1).unsqueeze(1) * 10
        return nn.functional.one_hot(classes, self.num_outputs).permute(0, 3, 1, 2).float() * 10


def make_trainer(**overrides):
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, **overrides)


def masks(num_classes: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, max(num_classes, 2), (6, 8, 8), generator=generator)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_perfect_prediction_scores_one(num_outputs):
    data = MaskData(masks(num_outputs), num_outputs)
    metrics = SegmentationTask().evaluate(Oracle(num_outputs), data, make_trainer)
    assert metrics == pytest.approx({"dice": 1.0, "miou": 1.0})


def test_all_background_prediction():
    # Foreground Dice is 0; mIoU averages background IoU (background pixels / all pixels) and foreground 0.
    target = masks(1)
    metrics = SegmentationTask().evaluate(Oracle(1, wrong=0), MaskData(target, 1), make_trainer)
    background_share = float((target == 0).float().mean())
    assert metrics["dice"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["miou"] == pytest.approx(background_share / 2, abs=1e-4)


def test_training_lowers_the_loss_on_a_tiny_unet():
    torch.manual_seed(0)
    target = torch.zeros(8, 16, 16, dtype=torch.long)
    target[:, 4:12, 4:12] = 1
    data = MaskData(target, 1)
    model = segmentation_model("Unet", "tu-resnet18", None, in_channels=1, num_classes=1, encoder_depth=2,
                               decoder_channels=[8, 8])
    task = SegmentationTask(epochs=4, lr=1e-2)
    module = task.lightning_module(model, data)
    with torch.no_grad():
        before = float(module.loss(model(data.images), target))
    task.train(model, data, make_trainer)
    model.train()  # compare losses in the same BN mode
    with torch.no_grad():
        after = float(module.loss(model(data.images), target))
    assert after < before


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="dice_weight"):
        SegmentationTask(dice_weight=-1)
    with pytest.raises(ConfigError, match="epochs"):
        SegmentationTask(epochs=0)
