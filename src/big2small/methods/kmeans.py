"""`kmeans`: per-layer weight sharing. Each layer's weights are clustered (1-D k-means, 2^b centroids); the layer
is stored as an fp32 codebook of 2^b centroids plus one b-bit index per weight (packed).

k-means starts from evenly spaced quantiles (deterministic) and runs Lloyd iterations; in 1-D the nearest
centroid is found by bucketing the weight between centroid midpoints. A layer never gets more centroids than it
has weights (b <= ceil(log2 numel)).

Size knob: `bits` (the same for every layer). When `target_ratio` is set it takes precedence over `bits`: widths
are chosen per layer as in `quant`, starting from 1 bit and giving the next bit to the layer that removes most
squared error (~ variance 4^-b) per byte, codebook growth included. Doubling a codebook is a coarse step, so
the bytes left over then go to one layer as a further index bit with a partial codebook (2^(b-1) < k < 2^b
centroids), which lands the ratio on the target within a few bytes.

With `entropy_coding` (the default) each layer's indices are stored as an rANS stream wherever that is smaller than
the packed indices (methods/code_streams.py), and the search counts the coded bytes of each layer's clustering at
each width (the top-up then bisects the partial codebook's size on coded bytes).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.errors import ConfigError
from big2small.graph.weights import set_parameter
from big2small.methods import code_streams
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

MIN_BITS, MAX_BITS = 1, 16
CENTROID_BYTES = 4  # fp32 codebook


@register
class KMeansSharing(BitAllocatingCompressor):
    """Per-layer weight sharing: 1-D k-means with 2^bits centroids (fp32 codebook), indices packed at bits bits.

    bits: 1..16, the same for every layer (used when target_ratio is None); iterations: Lloyd iterations, started
    from evenly spaced quantiles; target_ratio, when set, takes precedence: mixed bit widths per layer meet it.
    """
    name = "kmeans"
    ARTIFACT_TENSORS = {"codes": torch.uint8, "codebooks": torch.float32}
    META_FIELDS = {}
    LAYER_FIELDS = {"centroids": Field(1, 2**MAX_BITS), **code_streams.CODING_FIELDS}
    MIN_BITS, MAX_BITS = MIN_BITS, MAX_BITS

    def __init__(self, bits: int | None = 4, iterations: int = 30, target_ratio=None,
                 layer_types=("conv", "linear"), min_params=0, entropy_coding: bool = True,
                 context_coding: bool = True) -> None:
        super().__init__(bits, target_ratio, layer_types, min_params, entropy_coding, context_coding)
        if int(iterations) != iterations or int(iterations) < 0:
            raise ConfigError(f"kmeans: iterations must be an integer >= 0 (got {iterations})")
        self.iterations = int(iterations)
        self._coded_sizes: dict[tuple[str, int], int] = {}

    def settings(self) -> dict:
        return {**super().settings(), "bits": self.bits, "iterations": self.iterations,
                "entropy_coding": self.entropy_coding, "context_coding": self.context_coding}

    def coded_bytes(self, name: str, weight: torch.Tensor, clusters: int) -> int:
        """Bytes of one layer's indices into `clusters` centroids as stored; memoised per fit."""
        if not self.entropy_coding:
            return packed_size(weight.numel(), index_bits(clusters))
        if (name, clusters) not in self._coded_sizes:
            self._coded_sizes[(name, clusters)] = self._layer_codes(weight, clusters)[1].numel()
        return self._coded_sizes[(name, clusters)]

    def _layer_codes(self, weight: torch.Tensor, clusters: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """(header fields, stored index bytes, codebook) of one layer clustered into `clusters` centroids."""
        centroids, assignment = kmeans_1d(weight.reshape(-1), clusters, self.iterations)
        context = (nearest_zero(centroids), math.prod(weight.shape[2:])) if self.context_coding else None
        fields, data = code_streams.store(assignment, clusters, pack_uint(assignment, index_bits(clusters)),
                                          self.entropy_coding, context)
        return fields, data, centroids

    def fixed_levels(self, weights: dict[str, torch.Tensor]) -> dict[str, int]:
        return {name: 2 ** min(self.bits, max_bits(w.numel())) for name, w in weights.items()}

    def level_stats(self, centroids: dict[str, int]) -> dict[str, dict]:
        return {name: {"centroids": k, "bits": index_bits(k)} for name, k in centroids.items()}

    def why_not_closer(self) -> str:
        return "a layer holds at most one centroid per weight and at least 1 bit per weight"

    def pack(self, weights, centroid_counts: dict[str, int], sizing_only: bool = False) -> Compressed:
        codes, codebooks, layers = [], [], []
        for name, weight in weights.items():
            clusters = centroid_counts[name]
            bits = index_bits(clusters)
            if sizing_only:
                centroids = torch.zeros(clusters)
                packed = packed_size(weight.numel(), bits)
                fields = code_streams.sizing_fields(packed, self.entropy_coding)
                codes.append(torch.zeros(packed, dtype=torch.uint8))
            else:
                fields, data, centroids = self._layer_codes(weight, clusters)
                codes.append(data)
            codebooks.append(centroids)
            layers.append({"name": name, "shape": list(weight.shape), "centroids": clusters, **fields})
        tensors = {"codes": torch.cat(codes), "codebooks": torch.cat(codebooks).float()}
        return Compressed(self.name, self.settings(), tensors, {"replaced": list(weights), "layers": layers})

    def levels_for_target(self, weights: dict[str, torch.Tensor]) -> dict[str, int]:
        self._coded_sizes.clear()  # sizes of another model's layers
        original = original_bytes(weights)
        lowest = {name: MIN_BITS for name in weights}
        sizing = self.pack(weights, {name: 2**MIN_BITS for name in weights}, sizing_only=True)
        spare = budget_bytes(original, self.target_ratio) - artifact_bytes(sizing) - HEADER_SLACK_BYTES
        spare += sum(packed_size(w.numel(), MIN_BITS) - self.coded_bytes(n, w, 2**MIN_BITS) for n, w in weights.items())
        variance = {name: float(w.var()) if w.numel() > 1 else 0.0 for name, w in weights.items()}

        def step_bytes(name, bits):
            count = weights[name].numel()
            if bits >= min(MAX_BITS, max_bits(count)):
                return None
            return (self.coded_bytes(name, weights[name], 2 ** (bits + 1)) - self.coded_bytes(name, weights[name], 2**bits)
                    + CENTROID_BYTES * 2**bits)

        def priority(name, bits):
            return variance[name] * 4.0 ** (-bits) * weights[name].numel() / max(step_bytes(name, bits), 1)

        bits = greedy_raise(lowest, step_bytes, priority, spare)
        centroids = {name: 2**b for name, b in bits.items()}
        spare -= sum(step_bytes(name, MIN_BITS + i) for name, b in bits.items() for i in range(b - MIN_BITS))
        # Top-up: one more index bit for the layer that gains most, with as many extra centroids as fit.
        def growth(name, clusters):  # bytes of `clusters` centroids over the layer's 2^bits
            low = 2 ** bits[name]
            return (self.coded_bytes(name, weights[name], clusters) - self.coded_bytes(name, weights[name], low)
                    + CENTROID_BYTES * (clusters - low))

        candidates = [n for n, b in bits.items() if step_bytes(n, b) is not None and growth(n, 2**b + 1) <= spare]
        if candidates:
            name = max(candidates, key=lambda n: priority(n, bits[n]))
            fits, over = 2 ** bits[name] + 1, 2 ** (bits[name] + 1)  # the most centroids that fit lie in [fits, over)
            while over - fits > 1:  # the coded bytes grow with the centroids, so bisect
                middle = (fits + over) // 2
                fits, over = (middle, over) if growth(name, middle) <= spare else (fits, middle)
            centroids[name] = fits
        return centroids

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, int]:
        layers = meta["layers"]
        return {"codes": sum(code_streams.stored_bytes(layer, packed_size(math.prod(layer["shape"]),
                                                                           index_bits(layer["centroids"])))
                             for layer in layers),
                "codebooks": sum(layer["centroids"] for layer in layers)}

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        codes, codebooks = compressed.tensors["codes"], compressed.tensors["codebooks"]
        byte_offset = centroid_offset = 0
        for layer in compressed.meta["layers"]:
            shape, clusters = layer["shape"], int(layer["centroids"])
            bits = index_bits(clusters)
            count = math.prod(shape)
            size = code_streams.stored_bytes(layer, packed_size(count, bits))
            centroids = codebooks[centroid_offset : centroid_offset + clusters].float()
            if centroids.numel() != clusters:
                raise ValueError("kmeans artifact: payload size does not match its layer list")
            assignment = code_streams.load(layer, codes[byte_offset : byte_offset + size], clusters, count,
                                           lambda data, bits=bits, count=count: unpack_uint(data, bits, count),
                                           (nearest_zero(centroids), math.prod(shape[2:])))
            if assignment.numel() and int(assignment.max()) >= clusters:
                raise ValueError(f"kmeans artifact: {layer['name']} indexes past its codebook")
            set_parameter(model, layer["name"], centroids[assignment].reshape(shape))
            byte_offset, centroid_offset = byte_offset + size, centroid_offset + clusters
        if byte_offset != codes.numel() or centroid_offset != codebooks.numel():
            raise ValueError("kmeans artifact: payload size does not match its layer list")
        return model


def nearest_zero(centroids: torch.Tensor) -> int:
    """The index of the centroid nearest 0: the context coder's zero symbol (its kernels' runs of small weights)."""
    return int(centroids.abs().argmin())


def index_bits(clusters: int) -> int:
    return max(MIN_BITS, math.ceil(math.log2(clusters)))


def max_bits(count: int) -> int:
    """Widest index that still gives no more centroids than weights."""
    return max(MIN_BITS, math.ceil(math.log2(max(count, 2))))


def kmeans_1d(values: torch.Tensor, clusters: int, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (sorted centroids (clusters,), index of each value's nearest centroid). Deterministic."""
    values = values.double()
    quantiles = (torch.arange(clusters, dtype=torch.float64) + 0.5) / clusters
    centroids = torch.quantile(values, quantiles) if values.numel() else torch.zeros(clusters, dtype=torch.float64)
    for _ in range(iterations):
        assignment = nearest_sorted(values, centroids)
        sums = torch.zeros(clusters, dtype=torch.float64).index_add_(0, assignment, values)
        counts = torch.zeros(clusters, dtype=torch.float64).index_add_(0, assignment, torch.ones_like(values))
        updated = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # empty clusters stay put
        updated = torch.sort(updated).values
        if torch.equal(updated, centroids):
            break
        centroids = updated
    centroids = centroids.float().double()  # assign against the stored (fp32) codebook
    return centroids.float(), nearest_sorted(values, centroids)


def nearest_sorted(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted `centroids` for each value (1-D: bucket between midpoints)."""
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    return torch.bucketize(values, midpoints)
