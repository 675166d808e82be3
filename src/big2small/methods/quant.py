"""`quant`: per-output-channel symmetric uniform quantisation to `bits` bits.

Each output channel c (dim 0 of the weight) is stored as integers q in [-(2^(b-1)-1), 2^(b-1)-1], packed at b
bits, plus its range r_c = max |w_c| in fp16; the weight is rebuilt as q * r_c / (2^(b-1)-1). Storing the range
rather than the step keeps fp16 away from its subnormals at 16 bits (steps there are ~1e-6). The range is
rounded *up* to fp16 so no weight is clipped.

With `entropy_coding` (the default) each layer's codes are stored as an rANS stream wherever that is smaller than
the packed codes (methods/code_streams.py), and the mixed-precision search below counts the coded bytes.

Size knob: `bits` (2..16, the same for every layer). When `target_ratio` is set it takes precedence over `bits`:
bit widths are then chosen per layer (mixed precision) so that the artifact, header included, reaches the
target as closely as one-bit steps allow. Starting from 2 bits everywhere, the layer whose next bit removes the
most squared error per stored byte (error of uniform quantisation ~ range^2 4^-b) gets it, until the budget is
spent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.graph.weights import set_parameter
from big2small.methods import code_streams
from big2small.methods.base import require_at_least
from big2small.methods.bit_allocation import BitAllocatingCompressor
from big2small.methods.budget import (
    HEADER_SLACK_BYTES,
    artifact_bytes,
    budget_bytes,
    greedy_raise,
    original_bytes,
)
from big2small.methods.header import Field
from big2small.methods.registry import register

MIN_BITS, MAX_BITS = 2, 16


@register
class UniformQuantizer(BitAllocatingCompressor):
    """Per-output-channel symmetric uniform quantisation, fp16 range per channel.

    bits: 2..16, the same for every layer (used when target_ratio is None); target_ratio, when set, takes
    precedence: mixed bit widths per layer meet it.
    """
    name = "quant"
    ARTIFACT_TENSORS = {"codes": torch.uint8, "ranges": torch.float16}
    META_FIELDS = {}
    LAYER_FIELDS = {"bits": Field(MIN_BITS, MAX_BITS), **code_streams.CODING_FIELDS}
    MIN_BITS, MAX_BITS = MIN_BITS, MAX_BITS

    def __init__(self, bits: int | None = 8, target_ratio=None, layer_types=("conv", "linear"), min_params=0,
                 entropy_coding: bool = True, context_coding: bool = True):
        super().__init__(bits, target_ratio, layer_types, min_params, entropy_coding, context_coding)
        self._coded_sizes: dict[tuple[str, int], int] = {}

    def settings(self) -> dict:
        return {**super().settings(), "bits": self.bits, "entropy_coding": self.entropy_coding,
                "context_coding": self.context_coding}

    def coded_bytes(self, name: str, weight: torch.Tensor, bits: int) -> int:
        """Bytes of one layer's codes at `bits` as stored (the stream where it is smaller); memoised per fit."""
        if not self.entropy_coding:
            return packed_size(weight.numel(), bits)
        if (name, bits) not in self._coded_sizes:
            self._coded_sizes[(name, bits)] = self._layer_codes(weight, bits)[1].numel()
        return self._coded_sizes[(name, bits)]

    def _layer_codes(self, weight: torch.Tensor, bits: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """(header fields, stored code bytes, channel ranges) of one layer at `bits`."""
        q, channel_range = quantize(weight, bits)
        offset = 2 ** (bits - 1) - 1
        context = (offset, math.prod(weight.shape[2:])) if self.context_coding else None
        fields, data = code_streams.store(q + offset, 2 * offset + 1, pack_uint(q + offset, bits), self.entropy_coding,
                                          context)
        return fields, data, channel_range

    def why_not_closer(self) -> str:
        return f"quant stores {MIN_BITS}..{MAX_BITS} bits per weight plus an fp16 range per channel"

    def pack(self, weights: dict[str, torch.Tensor], bits_per_layer: dict[str, int],
              sizing_only: bool = False) -> Compressed:
        codes, ranges, layers = [], [], []
        for name, weight in weights.items():
            bits = bits_per_layer[name]
            if sizing_only:
                packed = packed_size(weight.numel(), bits)
                fields = code_streams.sizing_fields(packed, self.entropy_coding)
                codes.append(torch.zeros(packed, dtype=torch.uint8))
                ranges.append(torch.zeros(weight.shape[0], dtype=torch.float16))
            else:
                fields, data, channel_range = self._layer_codes(weight, bits)
                codes.append(data)
                ranges.append(channel_range)
            layers.append({"name": name, "shape": list(weight.shape), "bits": bits, **fields})
        tensors = {"codes": torch.cat(codes), "ranges": torch.cat(ranges)}
        return Compressed(self.name, self.settings(), tensors, {"replaced": list(weights), "layers": layers})

    def levels_for_target(self, weights: dict[str, torch.Tensor]) -> dict[str, int]:
        self._coded_sizes.clear()  # sizes of another model's layers
        original = original_bytes(weights)
        lowest = {name: MIN_BITS for name in weights}
        sizing = self.pack(weights, lowest, sizing_only=True)
        overhead = artifact_bytes(sizing) - sum(t.numel() * t.element_size() for t in sizing.tensors.values())
        payload = sum(self.coded_bytes(n, w, MIN_BITS) + 2 * w.shape[0] for n, w in weights.items())
        spare = budget_bytes(original, self.target_ratio) - overhead - HEADER_SLACK_BYTES - payload
        # Mean squared channel range: the error of b-bit uniform quantisation scales as range^2 * 4^-b.
        spread = {name: float((w.reshape(w.shape[0], -1).abs().amax(dim=1) ** 2).mean()) for name, w in weights.items()}

        def step_bytes(name, bits):
            if bits >= MAX_BITS:
                return None
            return self.coded_bytes(name, weights[name], bits + 1) - self.coded_bytes(name, weights[name], bits)

        def priority(name, bits):
            return spread[name] * 4.0 ** (-bits) * weights[name].numel() / max(step_bytes(name, bits), 1)

        return greedy_raise(lowest, step_bytes, priority, spare)

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, int]:
        layers = meta["layers"]
        return {"codes": sum(code_streams.stored_bytes(layer, packed_size(math.prod(layer["shape"]), layer["bits"]))
                             for layer in layers),
                "ranges": sum(layer["shape"][0] for layer in layers)}

    @classmethod
    def check_values(cls, tensors: dict[str, torch.Tensor]) -> None:
        require_at_least(tensors["ranges"], "ranges", 0.0)  # max |w| of a channel

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        codes, ranges = compressed.tensors["codes"], compressed.tensors["ranges"]
        byte_offset = channel_offset = 0
        for layer in compressed.meta["layers"]:
            shape, bits = layer["shape"], int(layer["bits"])
            count, channels = math.prod(shape), shape[0]
            size = code_streams.stored_bytes(layer, packed_size(count, bits))
            offset = 2 ** (bits - 1) - 1
            q = code_streams.load(layer, codes[byte_offset : byte_offset + size], 2 * offset + 1, count,
                                  lambda data, bits=bits, count=count: unpack_uint(data, bits, count),
                                  (offset, math.prod(shape[2:])))
            q = q - offset
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
