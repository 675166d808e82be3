"""Stacks of G equally shaped INRs evaluated as one batched computation (baddbmm over the stack).

Every INR's initial parameters come from its own seed, so an INR fitted in any stack (all layers on one process,
or a share of them on one of several ranks) starts, and with the same steps ends, the same.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from big2small.methods.big2small.coords import fourier_features
from big2small.methods.big2small.settings import INRSettings
from big2small.methods.big2small.storage import fake_quantize

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def layer_sizes(settings: INRSettings, dims: int, outputs: int, width: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each linear layer of one INR: input -> `depth` hidden layers of `width` -> outputs."""
    inputs = dims * (1 + 2 * settings.frequencies) if settings.kind == "fourier" else dims
    sizes = [inputs] + [width] * settings.depth + [outputs]
    return list(zip(sizes[:-1], sizes[1:], strict=False))


class BatchedINR(nn.Module):
    """G MLPs with identical shapes; layer l's weights stacked as (G, fan_in, fan_out)."""

    def __init__(self, sizes: list[tuple[int, int]], seeds: list[int]) -> None:
        super().__init__()
        self.sizes = sizes
        self.fake_quant: int | None = None  # bits: forward sees weights rounded to their stored codes (QAT)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(len(seeds), i, o)) for i, o in sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(len(seeds), 1, o)) for _, o in sizes)
        with torch.no_grad():
            for g, seed in enumerate(seeds):
                generator = torch.Generator().manual_seed(int(seed))
                for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=False)):
                    w_bound, b_bound = self.init_bounds(layer)
                    weight[g].uniform_(-w_bound, w_bound, generator=generator)
                    bias[g].uniform_(-b_bound, b_bound, generator=generator)

    def init_bounds(self, layer: int) -> tuple[float, float]:
        bound = 1 / math.sqrt(self.sizes[layer][0])
        return bound, bound

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        return coords

    def activation_scale(self, layer: int) -> float:
        """A factor on hidden layer `layer`'s x W + b before its activation (folded into the matmul)."""
        return 1.0

    def activate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, coords: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
        """coords (g, B, D) -> values (g, B, K), for all INRs or the stack rows `which`."""
        h = self.encode(coords)
        last = len(self.sizes) - 1
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=False)):
            if which is not None:
                weight, bias = weight[which], bias[which]
            if self.fake_quant:
                weight = fake_quantize(weight, self.fake_quant)
            if layer < last:
                scale = self.activation_scale(layer)
                h = self.activate(torch.baddbmm(bias, h, weight, beta=scale, alpha=scale), layer)
            else:
                h = torch.baddbmm(bias, h, weight)
        return h


class BatchedFourierMLP(BatchedINR):
    """Fourier features of the coordinates, then a ReLU/GELU MLP."""

    def __init__(self, sizes, seeds, frequencies: int, activation: str) -> None:
        super().__init__(sizes, seeds)
        self.frequencies, self.activation = frequencies, activation

    def encode(self, coords):
        return fourier_features(coords, self.frequencies)

    def activate(self, h, layer):
        return ACTIVATIONS[self.activation](h)


class BatchedSiren(BatchedINR):
    """SIREN (Sitzmann et al. 2020): sine activations sin(omega0 (x W + b)) on the raw coordinates.

    Initialisation as in the paper: first layer U(-1/n, 1/n), later layers U(-sqrt(6/n)/omega0, sqrt(6/n)/omega0),
    so activations stay well distributed through depth.
    """

    def __init__(self, sizes, seeds, omega0: float) -> None:
        self.omega0 = float(omega0)  # read by init_bounds during super().__init__
        super().__init__(sizes, seeds)

    def init_bounds(self, layer: int) -> tuple[float, float]:
        fan_in = self.sizes[layer][0]
        bound = 1 / fan_in if layer == 0 else math.sqrt(6 / fan_in) / self.omega0
        return bound, 1 / math.sqrt(fan_in)

    def activation_scale(self, layer: int) -> float:
        return self.omega0  # one tensor less per hidden layer than sin(omega0 * h) (memory at large grids)

    def activate(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        return torch.sin(h)


def build_network(settings: INRSettings, dims: int, outputs: int, width: int, seeds: list[int]) -> BatchedINR:
    sizes = layer_sizes(settings, dims, outputs, width)
    if settings.kind == "siren":
        return BatchedSiren(sizes, seeds, settings.omega0)
    return BatchedFourierMLP(sizes, seeds, settings.frequencies, settings.activation)
