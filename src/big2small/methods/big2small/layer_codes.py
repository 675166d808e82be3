"""Layers stored as their weights' own b-bit codes instead of an INR (b = 2..8).

Codes are symmetric integers q in [-(2^(b-1) - 1), 2^(b-1) - 1], one fp16 scale per output channel (dim 0) equal
to the channel's max |w| / (2^(b-1) - 1); the weight is q * scale. They are bit-packed per layer at b bits.
Refinement may move each code by at most one level from the nearest code of its weight (`RoundingOffsets`), chosen
for the network's output instead of for the weight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.methods.big2small.storage import levels, quantize

MIN_CODE_BITS, MAX_CODE_BITS = 2, 8


@dataclass
class WeightCodes:
    codes: torch.Tensor  # int64, shaped like the weight
    scale: torch.Tensor  # fp16, one per output channel
    bits: int

    def values(self) -> torch.Tensor:
        return self.codes.float() * self.scale.float().reshape(-1, *[1] * (self.codes.dim() - 1))

    def packed(self) -> torch.Tensor:
        return pack_uint(self.codes + levels(self.bits), self.bits)


def weight_codes(weight: torch.Tensor, bits: int) -> WeightCodes:
    """The nearest b-bit codes of a weight tensor (output channels first)."""
    codes, scale = quantize(weight.detach().reshape(weight.shape[0], -1).T, bits)
    return WeightCodes(codes.T.reshape(weight.shape), scale.reshape(-1), bits)


def unpack_weight_codes(packed: torch.Tensor, scale: torch.Tensor, shape: tuple[int, ...], bits: int) -> WeightCodes:
    codes = unpack_uint(packed, bits, math.prod(shape)) - levels(bits)
    return WeightCodes(codes.reshape(shape), scale.reshape(-1), bits)


def code_bytes(shape: tuple[int, ...] | torch.Size, bits: int) -> int:
    """Bytes of one layer's codes and scales."""
    return packed_size(math.prod(shape), bits) + 2 * shape[0]


def squared_error(weight: torch.Tensor, bits: int) -> float:
    return float(((weight_codes(weight, bits).values() - weight) ** 2).sum())


class RoundingOffsets(nn.Module):
    """Trainable roundings of coded layers: code = round(w / scale + tanh(v)), v starting at 0 (the nearest code),
    so each code moves at most one level from the nearest; straight-through rounding in the forward pass."""

    def __init__(self, weights: dict[str, torch.Tensor], coded: dict[str, WeightCodes]) -> None:
        super().__init__()
        self.names = list(coded)
        self.bits = [coded[name].bits for name in self.names]
        self.offsets = nn.ParameterList(nn.Parameter(torch.zeros_like(weights[name])) for name in self.names)
        for index, name in enumerate(self.names):
            scale = coded[name].scale.float().reshape(-1, *[1] * (weights[name].dim() - 1))
            self.register_buffer(f"scale_{index}", scale, persistent=False)
            self.register_buffer(f"unrounded_{index}", weights[name].detach() / scale, persistent=False)

    def _codes(self, index: int, straight_through: bool) -> torch.Tensor:
        unrounded = getattr(self, f"unrounded_{index}") + torch.tanh(self.offsets[index])
        limit = levels(self.bits[index])
        rounded = torch.round(unrounded).clamp(-limit, limit)
        return unrounded + (rounded - unrounded).detach() if straight_through else rounded

    def forward(self) -> dict[str, torch.Tensor]:
        """The coded layers' weights, differentiable in the offsets."""
        return {name: self._codes(i, True) * getattr(self, f"scale_{i}") for i, name in enumerate(self.names)}

    def codes(self, coded: dict[str, WeightCodes]) -> dict[str, WeightCodes]:
        """`coded` with the codes the offsets now choose (scales unchanged), on the CPU."""
        with torch.no_grad():
            return {name: WeightCodes(self._codes(i, False).long().cpu(), coded[name].scale, coded[name].bits)
                    for i, name in enumerate(self.names)}
