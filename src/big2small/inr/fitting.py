"""Fitting stacks of INRs to weight tensors with a Lightning loop.

Each `INRGroup` holds G INRs of one shape (same width, depth, coordinate dims) and the G standardised target
tensors they represent. Every step samples `batch_size` coordinates from every target and takes one Adam step
on all INRs of all groups together, so many layers cost one batched computation per step, not a Python loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from big2small.errors import FittingError
from big2small.inr.coords import grid_coordinates
from big2small.inr.networks import BatchedFourierMLP


@dataclass
class INRGroup:
    names: list[str]                 # one weight tensor name per INR, for messages and tables
    targets: list[torch.Tensor]      # standardised weight tensors, all with the same number of dims
    net: BatchedFourierMLP

    def __post_init__(self) -> None:
        self.shapes = torch.tensor([list(t.shape) for t in self.targets], dtype=torch.int64)
        self.numels = self.shapes.prod(dim=1)
        longest = int(self.numels.max())
        # Padded flat targets (G, longest); padding is never sampled.
        self.flat_targets = torch.zeros(len(self.targets), longest)
        for g, target in enumerate(self.targets):
            self.flat_targets[g, : target.numel()] = target.reshape(-1)

    def predict_all(self) -> list[torch.Tensor]:
        """Evaluate every INR on its full grid (chunked to bound memory)."""
        longest = int(self.numels.max())
        outputs = []
        with torch.no_grad():
            for start in range(0, longest, 65536):
                index = torch.arange(start, min(start + 65536, longest))[None].expand(len(self.targets), -1)
                index = torch.minimum(index, (self.numels - 1)[:, None])
                outputs.append(self.net(grid_coordinates(index, self.shapes)))
        flat = torch.cat(outputs, dim=1)
        return [flat[g, : int(n)].reshape(t.shape) for g, (n, t) in enumerate(zip(self.numels, self.targets))]


class INRFitModule(L.LightningModule):
    def __init__(self, groups: list[INRGroup], steps: int, lr: float, batch_size: int, seed: int) -> None:
        super().__init__()
        self.groups = groups
        self.nets = nn.ModuleList(group.net for group in groups)
        self.steps, self.lr, self.batch_size = steps, lr, batch_size
        self.sampler = torch.Generator().manual_seed(seed)

    def train_dataloader(self) -> DataLoader:
        # One dummy item per step: the coordinates are sampled inside training_step.
        return DataLoader(TensorDataset(torch.arange(self.steps)), batch_size=1)

    def training_step(self, batch, batch_idx):
        losses = []
        for group in self.groups:
            count = len(group.targets)
            index = (torch.rand(count, self.batch_size, generator=self.sampler) * group.numels[:, None]).long()
            target = torch.gather(group.flat_targets, 1, index).to(self.device)
            coords = grid_coordinates(index, group.shapes).to(self.device)
            per_inr = ((group.net(coords) - target) ** 2).mean(dim=1)
            _raise_on_nan(per_inr, group.names)
            losses.append(per_inr)
        per_inr = torch.cat(losses)
        loss = per_inr.mean()
        self.log("fit/mse", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _raise_on_nan(per_inr_loss: torch.Tensor, names: list[str]) -> None:
    bad = ~torch.isfinite(per_inr_loss.detach())
    if bad.any():
        name = names[int(bad.nonzero()[0])]
        raise FittingError(f"INR fitting diverged (non-finite loss) on layer {name}; lower compressor.lr")
