"""The coded bits of codes under refinement, so that the refinement weighs what a code move costs in bits against
the output error it saves.

An entropy-coded layer's codes are stored under their own histogram (encodings/entropy_codes.py), so a code q costs
about -log2 p(q) bits, p(q) the share of q among the layer's codes. `CodeRate` holds each layer's costs fixed at its
stored codes' histogram (a level no stored code takes counts as UNSEEN_COUNT codes) and gives them to
rounding_offsets.py, which prices a code lying between two levels as the linear mix of their costs (so a move
towards a cheaper level has a gradient). Refined codes' bits are measured exactly, as n times the empirical entropy
of each layer's codes (what the coder's stream approaches).
`hold_within` then returns the moves that cost most bits for least conviction to their stored codes until the
refined codes' bits are within a limit, and `hold_to_bytes` does so until the artifact that stores them is within
a byte limit (a context-coded stream codes them in fewer bytes than their entropy, by a share refinement may
change).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from big2small.methods.big2small.layer_codes import WeightCodes, code_limit
from big2small.methods.big2small.rounding_offsets import RoundingOffsets

UNSEEN_COUNT = 0.5  # a level no stored code takes is priced as if this many codes took it
# hold_within: how many times it measures the bits again and holds more moves, and the least rounding margin a
# move counts with (a move whose value lies on the rounding boundary is held first among equal savings).
HOLD_ROUNDS, MARGIN_FLOOR = 20, 0.01
BYTE_ROUNDS = 5  # hold_to_bytes: how many times it measures the stored bytes and lowers the bit limit


def level_counts(codes: torch.Tensor, limit: int) -> torch.Tensor:
    """How many of `codes` take each level -limit..limit."""
    return torch.bincount((codes.detach().to(torch.int32) + limit).reshape(-1), minlength=2 * limit + 1)


def entropy_bits(counts) -> float:
    """The summed bits of layers whose codes take each level as often as their `counts` say, each at its own
    empirical entropy (what the coder's stream approaches)."""
    total = 0.0
    for layer in counts:
        taken = layer[layer > 0].double()
        total += float(-(taken * torch.log2(taken / taken.sum())).sum())
    return total


def level_costs(codes: torch.Tensor, limit: int) -> torch.Tensor:
    """-log2 of each level's share among `codes` (levels -limit..limit), a level none takes at UNSEEN_COUNT codes."""
    counts = level_counts(codes, limit).double().clamp_min(UNSEEN_COUNT)
    return -torch.log2(counts / counts.sum())


class CodeRate(nn.Module):
    """Bit costs of the codes of `coded` layers (in that order), from the histograms of their stored codes."""

    def __init__(self, coded: dict[str, WeightCodes]) -> None:
        super().__init__()
        self.limits = [code_limit(codes.bits) for codes in coded.values()]
        for index, (codes, limit) in enumerate(zip(coded.values(), self.limits, strict=True)):
            costs = level_costs(codes.codes, limit).float()
            self.register_buffer(f"costs_{index}", costs, persistent=False)
            self.register_buffer(f"slopes_{index}", costs[1:] - costs[:-1], persistent=False)  # per level step

    def tables(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's (costs, slopes): the bits of each level -limit..limit, and cost(b + 1) - cost(b) per level
        step, for rounding_offsets.RoundingOffsets to price its codes' soft bits with."""
        return [(getattr(self, f"costs_{i}"), getattr(self, f"slopes_{i}")) for i in range(len(self.limits))]

    def bits(self, codes: list[torch.Tensor]) -> float:
        """The summed empirical-entropy bits of every layer's integer codes."""
        return entropy_bits(level_counts(values, limit) for values, limit in zip(codes, self.limits, strict=True))


def hold_within(rounding: RoundingOffsets, rate: CodeRate, bit_limit: float) -> int:
    """Holds moved codes of `rounding` at their stored codes until its codes' bits are within `bit_limit` (or no
    move is left); returns how many were held. Each round prices every move in the bits of `rate`'s tables (the
    stored codes' histograms, as the refinement did) and holds, among the moves whose return saves bits, those of
    most bits saved per rounding margin (how far the code's value lies past the boundary it crossed) until their
    savings cover the excess."""
    held = 0
    for _ in range(HOLD_ROUNDS):
        codes = rounding.rounded()
        excess = rate.bits(codes) - bit_limit
        if excess <= 0:
            break
        savings, priorities, layers, places = [], [], [], []
        for index, (now, limit) in enumerate(zip(codes, rate.limits, strict=True)):
            now, stored = now.reshape(-1), rounding.stored(index).reshape(-1)
            moved = (now != stored).nonzero().reshape(-1)
            costs = getattr(rate, f"costs_{index}").double()
            saving = costs[now[moved].long() + limit] - costs[stored[moved].long() + limit]
            value = rounding.unrounded(index).detach().reshape(-1)[moved]
            margin = (0.5 - (value - torch.round(value)).abs()).clamp_min(MARGIN_FLOOR).double()
            savings.append(saving)
            priorities.append(saving / margin)
            layers.append(torch.full_like(moved, index))
            places.append(moved)
        saving, layer, place = torch.cat(savings), torch.cat(layers), torch.cat(places)
        order = torch.argsort(torch.cat(priorities), descending=True)
        order = order[saving[order] > 0]
        if not len(order):
            break
        enough = int(torch.searchsorted(saving[order].cumsum(0), saving.new_tensor([excess])))
        chosen = order[: enough + 1]
        for index in layer[chosen].unique().tolist():
            shape = codes[index].shape
            mask = torch.zeros(shape.numel(), dtype=torch.bool, device=place.device)
            mask[place[chosen][layer[chosen] == index]] = True
            rounding.hold(index, mask.reshape(shape))
        held += len(chosen)
    return held


def hold_to_bytes(rounding: RoundingOffsets, rate: CodeRate, stored_bytes: Callable[[], int], byte_limit: int) -> int:
    """Holds moved codes of `rounding` (as hold_within) until `stored_bytes()`, the bytes its codes take as stored
    (or the artifact that stores them), are within `byte_limit`, each round lowering the codes' bit limit by the
    bits of the bytes they are over; returns how many were held."""
    held = 0
    for _ in range(BYTE_ROUNDS):
        excess = stored_bytes() - byte_limit
        if excess <= 0:
            break
        more = hold_within(rounding, rate, rate.bits(rounding.rounded()) - 8 * excess)
        if not more:
            break
        held += more
    return held
