"""`quant`: per-output-channel symmetric uniform quantisation to `bits` bits.

Each output channel c (dim 0 of the weight) is stored as integers q in [-(2^(b-1)-1), 2^(b-1)-1], packed at b
bits, plus its range r_c = max |w_c| in fp16; the weight is rebuilt as q * r_c / (2^(b-1)-1). Storing the range
rather than the step keeps fp16 away from its subnormals at 16 bits (steps there are ~1e-6). The range is
rounded *up* to fp16 so no weight is clipped.

`target_ratio` (instead of `bits`) picks the largest bit width whose predicted ratio reaches the target.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.compressors import register
from big2small.compressors.base import Compressor
from big2small.compressors.bitpack import pack_uint, packed_size, unpack_uint
from big2small.compressors.layers import set_parameter
from big2small.errors import ConfigError

MIN_BITS, MAX_BITS = 2, 16


@register
class UniformQuantizer(Compressor):
    name = "quant"

    def __init__(self, bits: int | None = 8, target_ratio=None, layer_types=("conv", "linear"), min_params=0):
        super().__init__(target_ratio, layer_types, min_params)
        if bits is not None and target_ratio is not None:
            raise ConfigError("quant: set either bits or target_ratio, not both (bits=null to use target_ratio)")
        if bits is None and target_ratio is None:
            raise ConfigError("quant: set bits (2..16) or target_ratio")
        if bits is not None and (int(bits) != bits or not MIN_BITS <= int(bits) <= MAX_BITS):
            raise ConfigError(f"quant: bits must be an integer in {MIN_BITS}..{MAX_BITS} (got {bits})")
        self.bits = None if bits is None else int(bits)

    def settings(self) -> dict:
        return {**super().settings(), "bits": self.bits}

    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        bits = self.bits if self.bits is not None else self._bits_for_target(weights)
        codes, ranges, layers = [], [], []
        for name, weight in weights.items():
            q, channel_range = quantize(weight, bits)
            codes.append(pack_uint(q + (2 ** (bits - 1) - 1), bits))
            ranges.append(channel_range)
            layers.append({"name": name, "shape": list(weight.shape)})
        tensors = {"codes": torch.cat(codes), "ranges": torch.cat(ranges)}
        meta = {"replaced": list(weights), "bits": bits, "layers": layers}
        return Compressed(self.name, self.settings(), tensors, meta)

    def _bits_for_target(self, weights: dict[str, torch.Tensor]) -> int:
        original = 4 * sum(w.numel() for w in weights.values())
        for bits in range(MAX_BITS, MIN_BITS - 1, -1):
            payload = sum(packed_size(w.numel(), bits) + 2 * w.shape[0] for w in weights.values())
            if original / payload >= self.target_ratio:
                return bits
        return MIN_BITS  # unreachable target: the run reports the ratio it measured

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        bits = int(compressed.meta["bits"])
        codes, ranges = compressed.tensors["codes"], compressed.tensors["ranges"]
        byte_offset = channel_offset = 0
        for layer in compressed.meta["layers"]:
            shape = layer["shape"]
            count, channels = math.prod(shape), shape[0]
            size = packed_size(count, bits)
            q = unpack_uint(codes[byte_offset : byte_offset + size], bits, count) - (2 ** (bits - 1) - 1)
            weight = dequantize(q.reshape(shape), ranges[channel_offset : channel_offset + channels], bits)
            set_parameter(model, layer["name"], weight)
            byte_offset, channel_offset = byte_offset + size, channel_offset + channels
        if byte_offset != codes.numel() or channel_offset != ranges.numel():
            raise ValueError("quant artifact: payload size does not match its layer list")
        return model


def quantize(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (signed integer codes shaped like weight, per-channel fp16 range)."""
    levels = 2 ** (bits - 1) - 1
    rows = weight.reshape(weight.shape[0], -1)
    channel_range = _round_up_fp16(rows.abs().amax(dim=1))
    step = (channel_range.float() / levels).clamp_min(torch.finfo(torch.float32).tiny)
    q = torch.round(rows / step[:, None]).clamp(-levels, levels).to(torch.int64)
    return q.reshape(weight.shape), channel_range


def dequantize(q: torch.Tensor, channel_range: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2 ** (bits - 1) - 1
    step = channel_range.float() / levels
    return (q.reshape(q.shape[0], -1).float() * step[:, None]).reshape(q.shape)


def _round_up_fp16(values: torch.Tensor) -> torch.Tensor:
    rounded = values.to(torch.float16)
    too_small = rounded.float() < values
    return torch.where(too_small, torch.nextafter(rounded, torch.full_like(rounded, math.inf)), rounded)
