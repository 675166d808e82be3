"""Semantic segmentation: Dice + cross-entropy training; Dice and mean IoU (torchmetrics) on the test split.

The data module's `num_classes` is the number of model outputs and decides the mode:
- 1: binary masks (0/1). One logit per pixel; loss = Dice + BCE; a pixel is foreground where the logit > 0.
- K >= 2: index masks with values 0..K-1 (0 = background). K logits; loss = Dice + cross-entropy.
Metrics compare index maps (`input_format="index"`), pooled over the whole split:
- `dice`: Dice of the foreground classes (class 1 for binary masks; the mean over classes 1..K-1 otherwise).
- `miou`: intersection over union averaged over all classes, background included (the usual semantic-seg mIoU).
"""

from __future__ import annotations

import lightning as L
import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn
from torch.nn import functional as F
from torchmetrics.segmentation import DiceScore, MeanIoU

from big2small.errors import ConfigError
from big2small.tasks.base import Task


class SegmentationTask(Task):
    metric_name = "dice"
    targets = "masks"

    def __init__(self, name: str = "segmentation", epochs: int = 8, lr: float = 3e-3, weight_decay: float = 1e-4,
                 dice_weight: float = 1.0, weight_penalty=None) -> None:
        super().__init__(name, epochs, lr, weight_decay, weight_penalty)
        if float(dice_weight) < 0:
            raise ConfigError(f"task: dice_weight must be >= 0 (got {dice_weight})")
        self.dice_weight = float(dice_weight)

    def training_settings(self) -> dict:
        return {**super().training_settings(), "dice_weight": self.dice_weight}

    def check_output(self, output: torch.Tensor, input_shape: list[int]) -> None:
        wanted = tuple(input_shape[1:])
        if not isinstance(output, torch.Tensor) or tuple(output.shape[2:]) != wanted or output.dim() != 2 + len(wanted):
            raise ConfigError(f"task segmentation needs class scores for every pixel, (classes, "
                              f"{', '.join(map(str, wanted))}) per input; the model gives {self.per_input(output)} "
                              "(a classifier? then task=classification)")

    def lightning_module(self, model: nn.Module, data: L.LightningDataModule) -> L.LightningModule:
        return SegmentationModule(model, int(data.num_classes), self)


class SegmentationModule(L.LightningModule):
    progress_label = "training the base model"  # names the progress bar (logs.PhaseProgressBar)

    def __init__(self, model: nn.Module, num_outputs: int, task: SegmentationTask) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ConfigError(f"segmentation: data.num_classes must be >= 1 (got {num_outputs})")
        self.model, self.task = model, task
        self.binary = num_outputs == 1
        self.dice_loss = DiceLoss("binary" if self.binary else "multiclass", from_logits=True)
        classes = 2 if self.binary else num_outputs  # index maps of a binary mask hold two classes
        self.metrics = nn.ModuleDict({
            f"{split}_{name}": metric
            for split in ("val", "test")
            for name, metric in (
                ("dice", DiceScore(classes, include_background=False, average="macro",
                                   aggregation_level="global", input_format="index")),
                ("miou", MeanIoU(classes, include_background=True, input_format="index")),
            )
        })

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if self.binary:
            pixel_loss = F.binary_cross_entropy_with_logits(logits[:, 0], masks.float())
            return pixel_loss + self.task.dice_weight * self.dice_loss(logits, masks.unsqueeze(1))
        return F.cross_entropy(logits, masks) + self.task.dice_weight * self.dice_loss(logits, masks)

    def predict_index(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, 0] > 0).long() if self.binary else logits.argmax(1)

    def training_step(self, batch, batch_idx):
        images, masks = batch
        loss = self.loss(self(images), masks) + self.task.regularization(self.model)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _score(self, split: str, batch) -> None:
        images, masks = batch
        predicted = self.predict_index(self(images))
        for name in ("dice", "miou"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(predicted, masks)
            self.log(f"{split}/{name}", metric, prog_bar=split == "val")

    def validation_step(self, batch, batch_idx):
        self._score("val", batch)

    def test_step(self, batch, batch_idx):
        self._score("test", batch)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.task.lr, weight_decay=self.task.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
