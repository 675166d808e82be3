"""Training-time weight penalties that make a model smooth and so easier to compress (arXiv 2505.24469).

Plugged into a task as `weight_penalty` (tasks/base.py adds its value to every training loss). For each conv or
linear weight W (C_out, C_in, ...), with M = W reshaped to (C_out, C_in*kh*kw):
- `nuclear`: ||M||_* (sum of singular values), pushing weights towards low rank, which is what `svd` keeps;
- `first_difference`: sum of squared differences of neighbouring channels, along C_out and along C_in;
- `second_difference`: the same with second differences (W[c+1] - 2 W[c] + W[c-1]), penalising curvature.
The total is `strength` times the sum over layers.

Against the paper: it names the same three penalties; which axes its derivatives run along and its strengths could
not be checked (only its abstract was available to us). Measured on a ResNet-20: docs/results.md, "Seed baselines".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.graph.weights import compressible_weights

KINDS = ("nuclear", "first_difference", "second_difference")


class SmoothnessPenalty:
    def __init__(self, kind: str = "nuclear", strength: float = 1e-4,
                 layer_types: tuple[str, ...] | list[str] = ("conv", "linear")) -> None:
        if kind not in KINDS:
            raise ConfigError(f"weight_penalty: kind must be one of {KINDS} (got {kind!r})")
        if not (float(strength) >= 0 and math.isfinite(float(strength))):
            raise ConfigError(f"weight_penalty: strength must be a finite number >= 0 (got {strength})")
        try:
            compressible_weights(nn.Sequential(), tuple(layer_types))
        except ValueError as error:
            raise ConfigError(f"weight_penalty: {error}") from None
        self.kind, self.strength, self.layer_types = kind, float(strength), tuple(layer_types)

    def settings(self) -> dict:
        """Part of the base-model cache key: a different penalty trains a different model."""
        return {"kind": self.kind, "strength": self.strength, "layer_types": list(self.layer_types)}

    def __call__(self, model: nn.Module) -> torch.Tensor:
        weights = compressible_weights(model, self.layer_types).values()
        return self.strength * sum(layer_penalty(w, self.kind) for w in weights)


def layer_penalty(weight: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "nuclear":
        return torch.linalg.matrix_norm(weight.reshape(weight.shape[0], -1), ord="nuc")
    order = 1 if kind == "first_difference" else 2
    total = weight.new_zeros(())
    for axis in (0, 1):
        if weight.dim() > axis and weight.shape[axis] > order:
            total = total + torch.diff(weight, n=order, dim=axis).pow(2).sum()
    return total
