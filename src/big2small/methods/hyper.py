"""`hyper`: Hyper-Compression (arXiv 2409.00592): groups of weights become points of an ergodic trajectory.

A layer's weights, flattened and cut into groups of k consecutive values, are normalised to [0, 1]^k with the
layer's range [lo, hi]. The irrational winding on the k-torus, x(theta) = frac(theta * a), visits points that
fill [0, 1)^k densely as theta runs over the integers; each group is replaced by the integer theta in
[0, 2^b) whose point x(theta) lies closest to it, stored at b bits. Rebuild: w = lo + (hi - lo) * x(theta). The
trajectory is the "hyperfunction": it is fixed by (k, b, a), so nothing of it is stored, only the thetas and
the layer's (lo, hi) in fp16. A group of k fp32 weights costs b bits: a ratio of about 32 k / b.

Choices of this project where the paper's details were not available to us (see ../shared/ALGORITHMS.md):
the winding direction a_i = frac(sqrt(p_i)) for the first k primes (rationally independent, so the trajectory
is dense), integer theta starting at 0, the nearest point found by exhaustive search over all 2^b thetas, and
one range per layer. No retraining, no data.

Size knobs: `group_size` k and `bits` b (1..16). When `target_ratio` is set it takes precedence over `bits`:
bit widths are chosen per layer as in `quant` (the next bit goes to the layer that removes the most squared
error per byte; for vector codes the error falls as 4^(-b/k)). `group_size: auto` (the default) takes k = 1
for targets below 4 (16-bit codes of pairs give at most 4x) and k = 2 otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.errors import ConfigError
from big2small.graph.weights import set_parameter
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
from big2small.numerics import DENOMINATOR_FLOOR

MIN_BITS, MAX_BITS = 1, 16
MAX_GROUP_SIZE = 8
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19)
SEARCH_CHUNK_ELEMENTS = 1 << 23  # groups x candidates compared at once (bounds the search's memory)


@register
class HyperCompression(BitAllocatingCompressor):
    """Hyper-Compression (arXiv 2409.00592): each group of group_size weights becomes the integer theta (bits bits)
    whose point frac(theta * a) on an irrational winding of the torus lies closest to it; fp16 range per layer.

    bits: 1..16, the same for every layer (used when target_ratio is None); group_size: weights per theta, 1..8,
    or "auto": 1 for target_ratio < 4 (pairs reach at most 4x), else 2; target_ratio, when set, takes
    precedence: mixed bit widths per layer meet it.
    """
    name = "hyper"
    ARTIFACT_TENSORS = {"codes": torch.uint8, "ranges": torch.float16}
    META_FIELDS = {"group_size": Field(1, MAX_GROUP_SIZE)}
    LAYER_FIELDS = {"bits": Field(MIN_BITS, MAX_BITS)}
    MIN_BITS, MAX_BITS = MIN_BITS, MAX_BITS

    def __init__(self, bits: int | None = 8, group_size: int | str = "auto", target_ratio=None,
                 layer_types=("conv", "linear"), min_params=0) -> None:
        super().__init__(bits, target_ratio, layer_types, min_params)
        if group_size == "auto":
            group_size = 1 if target_ratio is not None and float(target_ratio) < 4 else 2
        if isinstance(group_size, bool) or not isinstance(group_size, int | float) or int(group_size) != group_size \
                or not 1 <= int(group_size) <= MAX_GROUP_SIZE:
            raise ConfigError(f"hyper: group_size must be an integer in 1..{MAX_GROUP_SIZE} or auto (got {group_size})")
        self.group_size = int(group_size)

    def settings(self) -> dict:
        return {**super().settings(), "bits": self.bits, "group_size": self.group_size}

    def level_stats(self, levels: dict[str, int]) -> None:
        return None  # pack() records each layer's bits and measured error

    def why_not_closer(self) -> str:
        return (f"hyper stores {MIN_BITS}..{MAX_BITS} bits per group of {self.group_size} weights "
                "plus an fp16 range per layer")

    def pack(self, weights: dict[str, torch.Tensor], bits_per_layer: dict[str, int],
              sizing_only: bool = False) -> Compressed:
        codes, ranges, layers, stats = [], [], [], {}
        for name, weight in weights.items():
            bits, groups = bits_per_layer[name], math.ceil(weight.numel() / self.group_size)
            if sizing_only:
                codes.append(torch.zeros(packed_size(groups, bits), dtype=torch.uint8))
                ranges.append(torch.zeros(2, dtype=torch.float16))
            else:
                theta, layer_range = encode(weight, self.group_size, bits)
                codes.append(pack_uint(theta, bits))
                ranges.append(layer_range)
                rebuilt = decode(theta, layer_range, self.group_size, bits, weight.shape)
                error = float((rebuilt - weight).norm() / weight.norm().clamp_min(DENOMINATOR_FLOOR))
                stats[name] = {"bits": bits, "group_size": self.group_size, "relative_error": error}
            layers.append({"name": name, "shape": list(weight.shape), "bits": bits})
        tensors = {"codes": torch.cat(codes), "ranges": torch.cat(ranges)}
        meta = {"replaced": list(weights), "layers": layers, "group_size": self.group_size}
        compressed = Compressed(self.name, self.settings(), tensors, meta)
        compressed.layer_stats = stats
        return compressed

    def levels_for_target(self, weights: dict[str, torch.Tensor]) -> dict[str, int]:
        original = original_bytes(weights)
        lowest = {name: MIN_BITS for name in weights}
        groups = {name: math.ceil(w.numel() / self.group_size) for name, w in weights.items()}
        sizing = self.pack(weights, lowest, sizing_only=True)
        spare = budget_bytes(original, self.target_ratio) - artifact_bytes(sizing) - HEADER_SLACK_BYTES
        spread = {name: float((w.max() - w.min()) ** 2) for name, w in weights.items()}

        def step_bytes(name, bits):
            if bits >= MAX_BITS:
                return None
            return packed_size(groups[name], bits + 1) - packed_size(groups[name], bits)

        def priority(name, bits):
            # Covering 2^b points over a k-cube: the squared error per weight falls as range^2 * 4^(-b/k).
            gain = spread[name] * (4.0 ** (-bits / self.group_size)) * (1 - 4.0 ** (-1 / self.group_size))
            return gain * weights[name].numel() / max(step_bytes(name, bits), 1)

        return greedy_raise(lowest, step_bytes, priority, spare)

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, int]:
        layers, group_size = meta["layers"], meta["group_size"]
        return {"codes": sum(packed_size(math.ceil(math.prod(layer["shape"]) / group_size), layer["bits"])
                             for layer in layers),
                "ranges": 2 * len(layers)}  # lowest and highest weight per layer

    @classmethod
    def check_values(cls, tensors: dict[str, torch.Tensor]) -> None:
        lows, highs = tensors["ranges"].reshape(-1, 2).unbind(dim=1)
        if bool((lows > highs).any()):
            raise ValueError("tensor 'ranges' holds a layer range whose lowest value lies above its highest")

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        codes, ranges = compressed.tensors["codes"], compressed.tensors["ranges"]
        group_size = int(compressed.meta["group_size"])
        if not 1 <= group_size <= MAX_GROUP_SIZE:
            raise ValueError(f"hyper artifact: group_size {group_size} is out of range")
        byte_offset = 0
        for index, layer in enumerate(compressed.meta["layers"]):
            shape, bits = layer["shape"], int(layer["bits"])
            groups = math.ceil(math.prod(shape) / group_size)
            size = packed_size(groups, bits)
            theta = unpack_uint(codes[byte_offset : byte_offset + size], bits, groups)
            weight = decode(theta, ranges[2 * index : 2 * index + 2], group_size, bits, shape)
            set_parameter(model, layer["name"], weight)
            byte_offset += size
        if byte_offset != codes.numel() or 2 * len(compressed.meta["layers"]) != ranges.numel():
            raise ValueError("hyper artifact: payload size does not match its layer list")
        return model


def winding_direction(group_size: int) -> torch.Tensor:
    """a_i = frac(sqrt(p_i)): rationally independent, so frac(theta * a) is dense in the k-torus."""
    roots = torch.tensor([math.sqrt(p) for p in PRIMES[:group_size]], dtype=torch.float64)
    return roots - roots.floor()


def trajectory(group_size: int, bits: int) -> torch.Tensor:
    """The 2^b points x(theta) = frac(theta * a), theta = 0 .. 2^b - 1: (2^b, k) float64."""
    theta = torch.arange(2**bits, dtype=torch.float64)[:, None]
    points = theta * winding_direction(group_size)[None, :]
    return points - points.floor()


def encode(weight: torch.Tensor, group_size: int, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (theta of each group (int64), layer range [lo, hi] in fp16, rounded outward so no weight is clipped)."""
    values = weight.reshape(-1).double()
    layer_range = _outward_fp16(values.min(), values.max())
    lo, hi = layer_range.double()
    span = float(hi - lo) or 1.0
    padded = torch.zeros(math.ceil(values.numel() / group_size) * group_size, dtype=torch.float64)
    padded[: values.numel()] = (values - lo) / span
    groups = padded.reshape(-1, group_size)
    points = trajectory(group_size, bits)
    if group_size == 1:
        return _nearest_on_line(groups[:, 0], points[:, 0]), layer_range
    point_norms = (points**2).sum(dim=1)
    chunk = max(1, SEARCH_CHUNK_ELEMENTS // points.shape[0])
    theta = torch.empty(groups.shape[0], dtype=torch.int64)
    for start in range(0, groups.shape[0], chunk):
        part = groups[start : start + chunk]
        # ||u - x||^2 = ||u||^2 - 2 u.x + ||x||^2; ||u||^2 is the same for every candidate, so it is left out.
        theta[start : start + chunk] = (point_norms[None, :] - 2 * part @ points.T).argmin(dim=1)
    return theta, layer_range


def _nearest_on_line(values: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Exact nearest point for scalars: bucket each value between the sorted points' midpoints."""
    ordered, order = torch.sort(points)
    return order[torch.bucketize(values, (ordered[1:] + ordered[:-1]) / 2)]


def decode(theta: torch.Tensor, layer_range: torch.Tensor, group_size: int, bits: int,
           shape: list[int] | torch.Size) -> torch.Tensor:
    if theta.numel() and int(theta.max()) >= 2**bits:
        raise ValueError("hyper artifact: a theta lies outside the trajectory's range")
    lo, hi = layer_range.double()
    points = theta.double()[:, None] * winding_direction(group_size)[None, :]
    values = lo + (hi - lo) * (points - points.floor())
    return values.reshape(-1)[: math.prod(shape)].float().reshape(shape)


def _outward_fp16(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    lo, hi = low.to(torch.float16), high.to(torch.float16)
    if lo.double() > low:
        lo = torch.nextafter(lo, torch.tensor(-math.inf, dtype=torch.float16))
    if hi.double() < high:
        hi = torch.nextafter(hi, torch.tensor(math.inf, dtype=torch.float16))
    return torch.stack([lo, hi])
