"""Image classification: cross-entropy training, micro top-1 accuracy (torchmetrics) on the test split."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from big2small.errors import ConfigError
from big2small.tasks.base import Task


class ClassificationTask(Task):
    metric_name = "accuracy"
    targets = "labels"

    def __init__(self, name: str = "classification", epochs: int = 15, lr: float = 3e-3,
                 weight_decay: float = 1e-4, label_smoothing: float = 0.0, weight_penalty=None) -> None:
        super().__init__(name, epochs, lr, weight_decay, weight_penalty)
        self.label_smoothing = float(label_smoothing)

    def training_settings(self) -> dict:
        return {**super().training_settings(), "label_smoothing": self.label_smoothing}

    def check_output(self, output: torch.Tensor, input_shape: list[int]) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 2:
            raise ConfigError(f"task classification needs one row of class scores per input; the model gives "
                              f"{self.per_input(output)} per input (a segmentation model? then task=segmentation)")

    def lightning_module(self, model: nn.Module, data: L.LightningDataModule) -> L.LightningModule:
        return ClassificationModule(model, data.num_classes, self)


class ClassificationModule(L.LightningModule):
    progress_label = "training the base model"  # names the progress bar (logs.PhaseProgressBar)

    def __init__(self, model: nn.Module, num_classes: int, task: ClassificationTask) -> None:
        super().__init__()
        self.model, self.task = model, task
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        loss = F.cross_entropy(self(images), labels, label_smoothing=self.task.label_smoothing)
        loss = loss + self.task.regularization(self.model)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.val_accuracy(self(images), labels)
        self.log("val/accuracy", self.val_accuracy, prog_bar=True)

    def test_step(self, batch, batch_idx):
        images, labels = batch
        self.test_accuracy(self(images), labels)
        self.log("test/accuracy", self.test_accuracy)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.task.lr, weight_decay=self.task.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
