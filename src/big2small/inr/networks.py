"""A stack of G equally shaped Fourier-feature MLPs evaluated as one batched computation (bmm)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from big2small.inr.coords import fourier_features

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def mlp_layer_sizes(coord_dims: int, frequencies: int, width: int, depth: int) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each linear layer: input features -> depth hidden layers of `width` -> 1."""
    sizes = [coord_dims * (1 + 2 * frequencies)] + [width] * depth + [1]
    return list(zip(sizes[:-1], sizes[1:]))


def mlp_parameter_count(coord_dims: int, frequencies: int, width: int, depth: int) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in mlp_layer_sizes(coord_dims, frequencies, width, depth))


class BatchedFourierMLP(nn.Module):
    """G independent MLPs with identical shapes; weights stacked as (G, fan_in, fan_out)."""

    def __init__(self, count: int, coord_dims: int, frequencies: int, width: int, depth: int,
                 activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")
        self.frequencies, self.activation = frequencies, activation
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in mlp_layer_sizes(coord_dims, frequencies, width, depth):
            bound = 1 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(count, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(count, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (G, B, D) -> values (G, B)."""
        h = fourier_features(coords, self.frequencies)
        act = ACTIVATIONS[self.activation]
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias, h, weight)
            if i < last:
                h = act(h)
        return h.squeeze(-1)

    def flat_parameters(self) -> torch.Tensor:
        """(G, P): each MLP's parameters flattened in a fixed order (weights then bias, layer by layer)."""
        parts = []
        for weight, bias in zip(self.weights, self.biases):
            parts += [weight.reshape(weight.shape[0], -1), bias.reshape(bias.shape[0], -1)]
        return torch.cat(parts, dim=1)

    def load_flat_parameters(self, flat: torch.Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for weight, bias in zip(self.weights, self.biases):
                for param in (weight, bias):
                    size = param[0].numel()
                    param.copy_(flat[:, offset : offset + size].reshape(param.shape))
                    offset += size
        if offset != flat.shape[1]:
            raise ValueError(f"expected {offset} parameters per INR, got {flat.shape[1]}")
