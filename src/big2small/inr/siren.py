"""SIREN (Sitzmann et al. 2020): sine activations sin(omega0 (x W + b)) on the raw coordinates.

Initialisation as in the paper: first layer U(-1/n, 1/n), later layers U(-sqrt(6/n)/omega0, sqrt(6/n)/omega0), so
activations stay well distributed through depth.
"""

from __future__ import annotations

import math

import torch

from big2small.inr.networks import BatchedINR


class BatchedSiren(BatchedINR):
    def __init__(self, sizes, seeds, omega0: float = 30.0) -> None:
        self.omega0 = float(omega0)  # read by init_bounds during super().__init__
        super().__init__(sizes, seeds)

    def init_bounds(self, layer: int) -> tuple[float, float]:
        fan_in = self.sizes[layer][0]
        bound = 1 / fan_in if layer == 0 else math.sqrt(6 / fan_in) / self.omega0
        return bound, 1 / math.sqrt(fan_in)

    def activate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        return torch.sin(self.omega0 * h)
