"""The shared shape of the bit-width compressors (`quant`, `kmeans`, `hyper`).

Each stores every replaced layer as codes of some width. `bits` fixes one width for every layer; `target_ratio`,
when set, wins and mixes widths across layers so that the measured artifact meets it (each subclass says how,
usually with `budget.greedy_raise`). Either way the flow is: choose levels -> pack -> report how close the
measured ratio landed.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch

from big2small.codec import Compressed
from big2small.errors import ConfigError
from big2small.methods.base import Compressor
from big2small.methods.budget import artifact_bytes, fixed_bits, original_bytes, report_landing

Levels = dict[str, int]  # per layer: its bit width, or what stands for it (kmeans: the centroid count)


class BitAllocatingCompressor(Compressor):
    MIN_BITS: ClassVar[int]
    MAX_BITS: ClassVar[int]

    def __init__(self, bits: int | None, target_ratio, layer_types, min_params, entropy_coding: bool = False,
                 context_coding: bool = False) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        self.bits = fixed_bits(self.name, bits, target_ratio, self.MIN_BITS, self.MAX_BITS)
        for key, value in (("entropy_coding", entropy_coding), ("context_coding", context_coding)):
            if not isinstance(value, bool):
                raise ConfigError(f"{self.name}: {key} must be true or false (got {value!r})")
        self.entropy_coding = entropy_coding  # codes as rANS streams where smaller (methods/code_streams.py)
        self.context_coding = context_coding  # with entropy coding, also context-coded streams where smaller still

    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        levels = self.fixed_levels(weights) if self.bits is not None else self.levels_for_target(weights)
        compressed = self.pack(weights, levels)
        stats = self.level_stats(levels)
        if stats is not None:
            compressed.layer_stats = stats
        report_landing(self.name, original_bytes(weights) / artifact_bytes(compressed), self.target_ratio,
                       self.why_not_closer())
        return compressed

    def fixed_levels(self, weights: dict[str, torch.Tensor]) -> Levels:
        """Every layer at `bits`."""
        return {name: self.bits for name in weights}

    @abstractmethod
    def levels_for_target(self, weights: dict[str, torch.Tensor]) -> Levels:
        """Per-layer levels whose artifact meets target_ratio."""

    @abstractmethod
    def pack(self, weights: dict[str, torch.Tensor], levels: Levels, sizing_only: bool = False) -> Compressed:
        """The artifact; with sizing_only, payloads are zeros of the final sizes."""

    def level_stats(self, levels: Levels) -> dict[str, dict] | None:
        """Per-layer rows for the results table (None: pack() set them)."""
        return {name: {"bits": bits} for name, bits in levels.items()}

    @abstractmethod
    def why_not_closer(self) -> str:
        """What limits how close to target_ratio this method can land (said when it misses by over 5 %)."""
