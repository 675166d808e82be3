"""Trainable roundings of the layers stored as codes: what the refinement moves, one level at most per code.

One refinement step needs, for every coded layer, its weights (codes x scales, rounded in the forward pass and
straight through in the backward pass), and with a rate-aware refinement the soft bits of its codes and how many of
them take each level. `RoundingOffsets.forward` makes all three in one pass per layer (`CodedLayer`), and keeps for
the backward pass two fp16 tensors per layer (the derivative of the codes before rounding in the offsets, and the
soft bits' slope at each code) where autograd would keep several fp32 tensors: over a ResNet-50's 23.5 M coded weights
that is what sets the refinement's peak memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from big2small.methods.big2small.layer_codes import FP16_TINY, WeightCodes, code_limit


@dataclass
class RoundedStep:
    """One step's coded layers: their `weights` by name, differentiable in the offsets (and scales' gains); with
    cost tables, the `soft_bits` of all their codes (differentiable too) and each layer's level `counts` as the
    codes round now (levels -limit..limit, int64)."""

    weights: dict[str, torch.Tensor]
    soft_bits: torch.Tensor | None
    counts: list[torch.Tensor] | None


def soft_blend(step: int, steps: int, soft_share: float) -> float:
    """How far refinement step `step` of `steps` blends the coded weights towards the codes before rounding
    (RefinementSettings.soft_share): 1 at the first step, falling linearly to 0 at `soft_share` of the steps, 0
    after; 0 throughout where `soft_share` is 0."""
    if soft_share <= 0:
        return 0.0
    return max(0.0, 1.0 - step / (soft_share * steps))


class CodedLayer(torch.autograd.Function):
    """A coded layer's weights, soft bits and level counts from its offsets v: codes before rounding
    u = base + tanh(v) x movable, codes round(u) clipped to +-limit, weights (codes + blend x (u clipped - codes)) x
    scale (blend 0: the codes as stored). The soft bits price a code u between levels b and b + 1 at
    cost(b) + (u - b) x slope(b) (`costs`, `slopes`: the layer's tables, or None: soft bits 0, without a gradient);
    the level counts (of the rounded codes) are made where `counted` (else empty); backward passes the weights'
    gradient straight through the rounding, whatever the blend."""

    @staticmethod
    def forward(ctx, offset, scale, base, movable, limit: int, costs, slopes, counted: bool, blend: float):
        tanh = torch.tanh(offset)
        unrounded = base + tanh * movable
        codes = torch.round(unrounded).clamp_(-limit, limit)
        inside = unrounded.clamp(-limit, limit) if blend != 0 or costs is not None else None
        seen = codes if blend == 0 else torch.lerp(codes, inside, blend)
        weight = seen * scale
        derivative = ((1 - tanh * tanh) * movable).half()  # d unrounded / d offset
        del tanh
        slope, soft, counts = None, unrounded.new_zeros(()), unrounded.new_zeros(0, dtype=torch.long)
        if costs is not None:
            below = torch.floor(inside).clamp_(-limit, limit - 1)
            level = (below + limit).long()
            slope = slopes[level]
            at_levels = torch.bincount(level.reshape(-1), minlength=len(costs)).to(costs.dtype)
            soft = at_levels @ costs + ((inside - below) * slope).sum()
            within = (unrounded >= -limit) & (unrounded <= limit)  # beyond the outer levels the clip holds them
            slope = torch.where(within, slope, 0.0).half()
        if counted:
            counts = torch.bincount((codes + limit).to(torch.int32).reshape(-1), minlength=2 * limit + 1)
        ctx.mark_non_differentiable(counts)
        if costs is None:
            ctx.mark_non_differentiable(soft)
        # the scales' gradient needs the codes as the weights saw them: int8 when rounded, else as they were
        seen_codes = (codes.to(torch.int8) if blend == 0 else seen) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(derivative, slope, scale, seen_codes)
        return weight, soft, counts

    @staticmethod
    def backward(ctx, grad_weight, grad_soft, _grad_counts):
        derivative, slope, scale, codes = ctx.saved_tensors
        grad_unrounded = grad_weight * scale
        if slope is not None and grad_soft is not None:
            grad_unrounded += grad_soft * slope.float()
        grad_scale = None
        if codes is not None:
            grad_scale = (grad_weight * codes).sum(dim=tuple(range(1, grad_weight.dim())), keepdim=True)
        return grad_unrounded * derivative, grad_scale, None, None, None, None, None, None, None


class RoundingOffsets(nn.Module):
    """Trainable roundings of coded layers: code = round(w / scale + s + tanh(v)), v starting at 0, where the whole
    shift s makes that the stored code (0 for nearest codes), so each code moves at most one level from the stored
    one; straight-through rounding in the backward pass.

    In a layer where more than `keep_zeros_above` of the stored codes are 0, those codes stay 0.

    With `learn_scales`, each output channel's scale is also trained, as scale * exp(g) with g starting at 0 (the
    codes stay rounded against the initial scale); the stored scale is then the trained one (on the scales' log
    grid, its nearest point).
    """

    def __init__(self, weights: dict[str, torch.Tensor], coded: dict[str, WeightCodes],
                 learn_scales: bool = False, keep_zeros_above: float = 1.0) -> None:
        super().__init__()
        self.names = list(coded)
        self.bits = [coded[name].bits for name in self.names]
        self.offsets = nn.ParameterList(nn.Parameter(torch.zeros_like(weights[name])) for name in self.names)
        self.log_gains = nn.ParameterList(
            nn.Parameter(torch.zeros(weights[name].shape[0], *[1] * (weights[name].dim() - 1)),
                         requires_grad=learn_scales) for name in self.names)
        for index, name in enumerate(self.names):
            scale = coded[name].scale.float().reshape(-1, *[1] * (weights[name].dim() - 1))
            ratios = weights[name].detach() / scale
            # Offsets start at the stored codes: where one is not its weight's nearest (a dead zone rounded it),
            # at that code plus the weight's fraction of a step.
            nearest = torch.round(ratios).clamp(-code_limit(self.bits[index]), code_limit(self.bits[index]))
            stored = coded[name].codes.float()
            self.register_buffer(f"scale_{index}", scale, persistent=False)
            self.register_buffer(f"unrounded_{index}", torch.where(stored == nearest, ratios,
                                                                   stored + ratios - torch.round(ratios)),
                                 persistent=False)
            zeros = coded[name].codes == 0
            frozen = zeros if float(zeros.float().mean()) > keep_zeros_above else torch.zeros_like(zeros)
            self.register_buffer(f"movable_{index}", ~frozen, persistent=False)

    def unrounded(self, index: int) -> torch.Tensor:
        """Layer `index`'s codes before rounding, differentiable in its offsets."""
        return getattr(self, f"unrounded_{index}") + torch.tanh(self.offsets[index]) * getattr(self, f"movable_{index}")

    def _codes(self, index: int) -> torch.Tensor:
        limit = code_limit(self.bits[index])
        return torch.round(self.unrounded(index)).clamp(-limit, limit)

    def _scale(self, index: int) -> torch.Tensor:
        return getattr(self, f"scale_{index}") * torch.exp(self.log_gains[index])

    def forward(self, tables: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                priced: bool = True, blend: float = 0.0) -> RoundedStep:
        """The coded layers' weights as they round now (with `blend` in (0, 1], that share of the way from the
        rounded codes to the codes before rounding: soft_blend); with `tables` (each layer's (costs, slopes),
        code_rate.CodeRate.tables) also their level counts and, where `priced`, their codes' soft bits (else 0,
        without a gradient: a rate term of weight 0 needs no prices)."""
        weights, soft, counts = {}, [], []
        for index, name in enumerate(self.names):
            costs, slopes = tables[index] if tables is not None and priced else (None, None)
            weight, layer_soft, layer_counts = CodedLayer.apply(
                self.offsets[index], self._scale(index), getattr(self, f"unrounded_{index}"),
                getattr(self, f"movable_{index}"), code_limit(self.bits[index]), costs, slopes, tables is not None,
                blend)
            weights[name] = weight
            soft.append(layer_soft)
            counts.append(layer_counts)
        if tables is None:
            return RoundedStep(weights, None, None)
        return RoundedStep(weights, torch.stack(soft).sum() if soft else torch.zeros(()), counts)

    def stored(self, index: int) -> torch.Tensor:
        """Layer `index`'s stored codes (float): where its codes start, and where a held code stays."""
        return torch.round(getattr(self, f"unrounded_{index}")).clamp(-code_limit(self.bits[index]),
                                                                        code_limit(self.bits[index]))

    def hold(self, index: int, mask: torch.Tensor) -> None:
        """From now on the codes of layer `index` where `mask` is true are its stored codes."""
        movable = getattr(self, f"movable_{index}")
        movable.masked_fill_(mask.to(movable.device), False)

    def rounded(self) -> list[torch.Tensor]:
        """Every layer's integer codes as they stand (float, no gradient), in `names` order."""
        with torch.no_grad():
            return [self._codes(i) for i in range(len(self.names))]

    def codes(self, coded: dict[str, WeightCodes]) -> dict[str, WeightCodes]:
        """`coded` with the codes (and scales, in their dtype) the refinement now chooses, on the CPU."""
        with torch.no_grad():
            return {name: WeightCodes(self._codes(i).cpu(),
                                      self._scale(i).reshape(-1).clamp_min(FP16_TINY)
                                      .to(coded[name].scale.dtype).cpu(),
                                      coded[name].bits)
                    for i, name in enumerate(self.names)}
