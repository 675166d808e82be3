"""The per-layer plan of a Big2Small fit: what each replaced weight becomes before any INR is trained.

One object instead of parallel dicts: the weights (in the channel order they are fitted in), their outlier coding,
the INR targets built from them, the channel permutations applied, and, once the budget has chosen them, the INR
width of every target (None: the target is stored in fp16 instead of as an INR; CODES: as its weights' own
b-bit codes, b in `code_bits`, the codes themselves in `coded` once chosen) and the storage bits of every INR
(`inr_bits`). With `entropy_coding`, coded layers are stored as rANS streams where those are smaller (with
`context_coding`, the smaller of a static and a context-coded stream), and every size the budget and the codec
choice see is that of the stream (`stored_codes_size`; the static stream's unless `context_budget`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from big2small.encodings import index_codes
from big2small.encodings.dtype_bytes import FP16_BYTES
from big2small.encodings.entropy_codes import PACKED
from big2small.methods.big2small import outliers as outlier_coding
from big2small.methods.big2small.allocation import CODES, inr_bytes
from big2small.methods.big2small.coords import FitTarget, build_targets
from big2small.methods.big2small.layer_codes import (
    DEAD_ZONES,
    MAX_CODE_BITS,
    NEAREST,
    WeightCodes,
    code_option,
    option_bits,
    option_rate_level,
    packed_codes_size,
    weight_codes,
    weight_codes_at_levels,
)
from big2small.methods.big2small.reconstruct import LayerCode
from big2small.methods.big2small.scale_grid import scale_bytes
from big2small.methods.big2small.settings import INRSettings, OutlierSettings

# A channel order applied before fitting: (the channel space it permutes, the permutation as a LongTensor).
ChannelOrder = tuple


@dataclass(frozen=True)
class Big2SmallPlan:
    weights: dict[str, torch.Tensor]                       # replaced weights by parameter name, as fitted
    prepared: dict[str, outlier_coding.Preprocessed]       # their outliers and standardised values
    targets: list[FitTarget]                               # what each INR fits (a layer, or a family of layers)
    orders: list[ChannelOrder] = field(default_factory=list)
    widths: dict[str, int | None] = field(default_factory=dict)  # target key -> INR width, None = fp16, CODES
    code_bits: dict[str, int] = field(default_factory=dict)     # target key -> bits, for targets stored as CODES
    code_rates: dict[str, int] = field(default_factory=dict)    # target key -> the rate level of its codes' scales
    coded: dict[str, WeightCodes] = field(default_factory=dict)  # their weights' codes, by parameter name
    inr_bits: dict[str, int] = field(default_factory=dict)      # target key -> storage bits, for INR targets
    entropy_coding: bool = False                                # coded layers as rANS streams where smaller
    context_coding: bool = False  # with entropy_coding, also as context-coded streams where smaller still
    context_budget: bool = False  # the sizes the budget sees are those, else the static streams'
    dead_zone: bool = False                       # codes at rate levels >= 1 may round with a dead zone
    log_scales: bool = False                      # coded layers' scales on scale_grid's grid, else fp16
    # The model's 1-D parameters that are not replaced (BatchNorm scales and shifts, biases) and that the refinement
    # tunes (refinement.affine_lr), by name in the model's parameter order, and their values in the model itself:
    # stored beside the codes as their changes (tuned_values.py) or in fp16; empty when they stay the model's own
    tuned: dict[str, torch.Tensor] = field(default_factory=dict)
    tuned_from: dict[str, torch.Tensor] = field(default_factory=dict)
    # (parameter name, bits) -> (coding, bytes) of its nearest codes, shared by every plan derived from this one
    nearest_sizes: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def prepare(cls, weights: dict[str, torch.Tensor], orders: list[ChannelOrder], inr: INRSettings,
                outliers: OutlierSettings, codes_below: int = 0, entropy_coding: bool = False,
                dead_zone: bool = False, log_scales: bool = False, context_coding: bool = False,
                context_budget: bool = False) -> Big2SmallPlan:
        """The plan before the budget; layers under `codes_below` weights (stored as codes) are never part of a
        family INR (scope `model`)."""
        prepared = {name: outlier_coding.preprocess(w, outliers) for name, w in weights.items()}
        alone = {name for name, w in weights.items() if w.numel() < codes_below}
        targets = build_targets({n: p.target for n, p in prepared.items()}, inr.unit, inr.scope, alone)
        return cls(weights, prepared, targets, orders, entropy_coding=entropy_coding, dead_zone=dead_zone,
                   log_scales=log_scales, context_coding=context_coding, context_budget=context_budget)

    def with_widths(self, widths: dict[str, int | None], code_bits: dict[str, int] | None = None,
                    default_bits: int = MAX_CODE_BITS, inr_bits: int | dict[str, int] | None = None) -> Big2SmallPlan:
        """These widths; a target stored as CODES gets its `code_bits` entry (a code option: bits and rate level),
        else `default_bits` (codes unset); an INR target gets its `inr_bits` entry (an int: every INR the same; None:
        the plan's own)."""
        options = {key: (code_bits or {}).get(key, default_bits) for key, w in widths.items() if w == CODES}
        if inr_bits is None:
            inr_bits = self.inr_bits
        inr_bits = {key: inr_bits if isinstance(inr_bits, int) else inr_bits[key] for key, w in widths.items() if w}
        return dataclasses.replace(self, widths=dict(widths), coded={}, inr_bits=inr_bits,
                                   code_bits={key: option_bits(o) for key, o in options.items()},
                                   code_rates={key: option_rate_level(o) for key, o in options.items() if o != option_bits(o)})

    def code_option(self, key: str) -> int:
        """The code option (bits and rate level) of a target stored as codes."""
        return code_option(self.code_bits[key], self.code_rates.get(key, 0))

    def with_nearest_codes(self) -> Big2SmallPlan:
        """Every coded target's weights as their nearest codes at its bits."""
        return self.with_codes({s.name: weight_codes(self.weights[s.name], self.code_bits[t.key],
                                                     self.code_rates.get(t.key, 0), self.dead_zones, self.log_scales)
                                for t in self.targets if self.widths[t.key] == CODES for s in t.segments})

    @property
    def budgets_context(self) -> bool:
        """Whether the sizes the budget sees are the context-coded streams' where those are smaller."""
        return self.context_coding and self.context_budget

    @property
    def dead_zones(self) -> tuple[float, ...]:
        """The roundings the codes' search may take (layer_codes.dead_zone_round)."""
        return DEAD_ZONES if self.dead_zone else (NEAREST,)

    def with_codes(self, coded: dict[str, WeightCodes]) -> Big2SmallPlan:
        return dataclasses.replace(self, coded=dict(coded))

    def with_tuned(self, tuned: dict[str, torch.Tensor]) -> Big2SmallPlan:
        """These tuned values; the first call also records them as the model's own (`tuned_from`)."""
        return dataclasses.replace(self, tuned=dict(tuned), tuned_from=self.tuned_from or dict(tuned))

    def stored_codes_size(self, name: str, option: int) -> tuple[str, int]:
        """(coding, bytes) of one layer's codes at a code option (bits and rate level) in the artifact, scales not
        included: its chosen codes once set, else its nearest codes."""
        bits = option_bits(option)
        coded = self.coded.get(name)
        if coded is not None and coded.bits == bits:
            return coded.stored_size(self.entropy_coding, self.budgets_context)
        shape = self.weights[name].shape
        if not self.entropy_coding:
            return PACKED, packed_codes_size(math.prod(shape), bits)
        if (name, option) not in self.nearest_sizes:
            self.nearest_codes(name, bits, [option_rate_level(option)])
        return self.nearest_sizes[(name, option)]

    def nearest_codes(self, name: str, bits: int, rate_levels: list[int]) -> dict[int, WeightCodes]:
        """One layer's nearest codes at `bits` and each of `rate_levels`, their stored sizes kept for
        `stored_codes_size`."""
        codes = weight_codes_at_levels(self.weights[name], bits, rate_levels, self.dead_zones, self.log_scales)
        for level, coded in codes.items():
            if self.entropy_coding and (name, code_option(bits, level)) not in self.nearest_sizes:
                self.nearest_sizes[(name, code_option(bits, level))] = coded.stored_size(True, self.budgets_context)
        return codes

    def stored_code_bytes(self, name: str, option: int) -> int:
        """Bytes of one layer's codes at a code option and its scales."""
        return self.stored_codes_size(name, option)[1] + scale_bytes(self.weights[name].shape[0], self.log_scales)

    def layer_codes(self) -> dict[str, LayerCode]:
        """What turns each layer's standardised INR output back into its weights."""
        return {name: LayerCode(p.mean, p.std, p.outlier_index, p.outlier_value) for name, p in self.prepared.items()}

    def layer_stats(self, inr: INRSettings, predicted_inrs: set[str] | None = None) -> dict[str, dict]:
        """Per replaced weight, for the results table: how it is stored and what that costs; with
        `predicted_inrs` (the targets the prediction before fitting let fit an INR), also `predicted_as`."""
        stats = {}
        for target in self.targets:
            width = self.widths[target.key]
            total = target.values.numel()
            family_bytes = inr_bytes(inr, target, width, self.inr_bits[target.key]) if width else 0
            for segment in target.segments:
                p = self.prepared[segment.name]
                share = segment.count * target.outputs / total
                stats[segment.name] = {
                    "stored_as": "inr" if width else "codes" if width == CODES else "fp16", "inr_width": width or 0,
                    "code_bits": self.code_bits.get(target.key, 0), "code_rate": self.code_rates.get(target.key, 0),
                    "inr_bits": self.inr_bits.get(target.key, 0),
                    **({} if predicted_inrs is None else
                       {"predicted_as": "inr" if target.key in predicted_inrs else "codes"}),
                    "inr_bytes": round(family_bytes * share),
                    "outliers": int(p.outlier_index.numel()) if width else 0,
                    "outlier_bytes": (FP16_BYTES * p.outlier_index.numel() + index_codes.encoded_size(
                        p.outlier_index, self.weights[segment.name].numel())) if width else 0,
                }
        return stats


def stacks_of(targets: list[FitTarget], inrs: dict[str, dict[int, int]]) -> dict[tuple, list[FitTarget]]:
    """Targets grouped by (dims, outputs, width, rows, bits) of the INRs `inrs` gives them ({key: {bits: width}},
    one INR per entry: padding would waste compute, and a stack is stored at one precision)."""
    stacks: dict[tuple, list[FitTarget]] = defaultdict(list)
    for target in targets:
        for bits, width in inrs.get(target.key, {}).items():
            stacks[(target.dims, target.outputs, width, target.coords.shape[0], bits)].append(target)
    return stacks
