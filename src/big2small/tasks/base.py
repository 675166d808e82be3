"""What every task provides: train a model on its data, evaluate one on the test split."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from torch import nn

from big2small.errors import ConfigError

TrainerFactory = Callable[..., L.Trainer]


class Task(ABC):
    # The headline metric's name in metrics.json (higher is better for every task here).
    metric_name: str
    # What the task learns from: "labels" (one class per input) or "masks" (one class per pixel). A data module
    # that names its `targets` must give these.
    targets: str

    def __init__(self, name: str, epochs: int = 10, lr: float = 1e-3, weight_decay: float = 0.0,
                 weight_penalty: Callable[[nn.Module], Any] | None = None) -> None:
        if int(epochs) < 1:
            raise ConfigError(f"task: epochs must be >= 1 (got {epochs})")
        if not float(lr) > 0:
            raise ConfigError(f"task: lr must be > 0 (got {lr})")
        self.name, self.epochs, self.lr, self.weight_decay = name, int(epochs), float(lr), float(weight_decay)
        # Optional training-time regulariser on the weights (e.g. smoothness penalties that make a model
        # easier to compress): a callable model -> scalar tensor added to the loss.
        self.weight_penalty = weight_penalty

    def regularization(self, model: nn.Module):
        """The weight penalty's value for `model` (0.0 without one); added to every training loss."""
        return self.weight_penalty(model) if self.weight_penalty is not None else 0.0

    def training_settings(self) -> dict[str, Any]:
        """Everything that changes the trained base model; part of the base-model cache key."""
        penalty = getattr(self.weight_penalty, "settings", lambda: repr(self.weight_penalty))()
        return {"task": self.name, "epochs": self.epochs, "lr": self.lr, "weight_decay": self.weight_decay,
                "weight_penalty": penalty if self.weight_penalty is not None else None}

    def check_fits(self, data: L.LightningDataModule, data_name: str, output: torch.Tensor | None,
                   input_shape: list[int] | None) -> None:
        """A ConfigError, before any training, where `data` gives other targets than this task learns from, or the
        model's `output` on one input of `input_shape` (None: not run) is not what the task compares them with."""
        given = getattr(data, "targets", None)
        if given is not None and given != self.targets:
            raise ConfigError(f"task {self.name} learns from {self.targets}, but data {data_name} gives {given}; "
                              f"choose a {self.name} data set or the task for this one")
        if output is not None:
            self.check_output(output, input_shape)

    @abstractmethod
    def check_output(self, output: torch.Tensor, input_shape: list[int]) -> None:
        """A ConfigError where the model's `output` on one input of `input_shape` does not fit this task."""

    @staticmethod
    def per_input(output) -> object:
        """What a model gave per input, for an error message: a tensor's shape without the batch dim, else its type."""
        return tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else type(output).__name__

    @abstractmethod
    def lightning_module(self, model: nn.Module, data: L.LightningDataModule) -> L.LightningModule:
        """Wrap `model` in the module whose training/test steps define this task."""

    def train(self, model: nn.Module, data: L.LightningDataModule, make_trainer: TrainerFactory) -> nn.Module:
        trainer = make_trainer(max_epochs=self.epochs)
        trainer.fit(self.lightning_module(model, data), datamodule=data)
        return model

    def evaluate(self, model: nn.Module, data: L.LightningDataModule, make_trainer: TrainerFactory) -> dict[str, float]:
        """Test-split metrics as {name: value}; the headline one is under `metric_name`.

        Runs under torch.inference_mode with the batch size of the data module's `eval_batch_size`. On CPU the
        model is switched to channels-last memory format for the pass (oneDNN convolutions run about twice as
        fast that way; the layout of the input follows the weights) and switched back afterwards.
        """
        trainer = make_trainer(inference_mode=True)
        on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
        if on_cpu:
            model.to(memory_format=torch.channels_last)
        try:
            results = trainer.test(self.lightning_module(model, data), datamodule=data, verbose=False)
        finally:
            if on_cpu:
                model.to(memory_format=torch.contiguous_format)
        prefix = "test/"
        return {key[len(prefix) :]: float(value) for key, value in results[0].items() if key.startswith(prefix)}
