"""What an INR is fitted to: weight tensors as tables of (coordinate -> values), each index normalised to [-1, 1].

unit `weight`: one entry per weight, coordinates (o, i, kh, kw) (linear: (o, i)), one value per entry.
unit `kernel`: one entry per (o, i), coordinates (o, i), the kh*kw kernel values as the output vector (NeRN).
scope `layer`: one target per weight tensor. scope `model`: one target per family of layers with equal coordinate
dims and output size (all 3x3 convs, say), with the layer's position in the model as a leading coordinate; the
layers named `alone` (those too small for an INR, stored as codes) stay targets of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Segment:
    """One weight tensor inside a target: rows start..start+count of its table."""

    name: str
    shape: list[int]
    start: int
    count: int

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The segment's rows as the (C_out, C_in*kh*kw) matrix the frequency loss transforms."""
        return values[self.start : self.start + self.count].reshape(self.shape[0], -1)


@dataclass
class FitTarget:
    key: str                    # layer name, or "model/<family>" for scope=model
    ordinal: int                # position among all targets: seeds its INR's init and sampling
    segments: list[Segment]
    coords: torch.Tensor        # (N, D) float32
    values: torch.Tensor        # (N, K) standardised weights

    @property
    def dims(self) -> int:
        return self.coords.shape[1]

    @property
    def outputs(self) -> int:
        return self.values.shape[1]


def entry_layout(shape: list[int] | torch.Size, unit: str) -> tuple[list[int], int]:
    """(entry grid shape, values per entry) of a weight tensor under `unit`."""
    shape = list(shape)
    if unit == "kernel" and len(shape) >= 2:
        return shape[:2], math.prod(shape[2:])
    return shape, 1


def grid(shape: list[int]) -> torch.Tensor:
    """(prod(shape), len(shape)) coordinates of a row-major grid; index i of n -> -1 + 2 i / (n - 1), 0 if n = 1."""
    axes = [torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def build_targets(standardised: dict[str, torch.Tensor], unit: str, scope: str,
                  alone: set[str] | frozenset[str] = frozenset()) -> list[FitTarget]:
    """Fit targets for the given standardised weights (ordered as the model holds them); with scope `model`, the
    families come first and the `alone` layers after them, each its own target keyed by its name."""
    if scope == "layer":
        targets = []
        for ordinal, (name, weight) in enumerate(standardised.items()):
            entries, outputs = entry_layout(weight.shape, unit)
            segment = Segment(name, list(weight.shape), 0, math.prod(entries))
            targets.append(FitTarget(name, ordinal, [segment], grid(entries), weight.reshape(-1, outputs)))
        return targets
    families = _model_targets({n: w for n, w in standardised.items() if n not in alone}, unit,
                              positions={name: position for position, name in enumerate(standardised)},
                              last=max(len(standardised) - 1, 1))
    singles = build_targets({n: w for n, w in standardised.items() if n in alone}, unit, "layer")
    for ordinal, target in enumerate(singles, start=len(families)):
        target.ordinal = ordinal
    return families + singles


def _model_targets(standardised: dict[str, torch.Tensor], unit: str, positions: dict[str, int],
                   last: int) -> list[FitTarget]:
    families: dict[tuple[int, int], list[tuple[int, str, torch.Tensor]]] = {}
    for name, weight in standardised.items():
        position = positions[name]
        entries, outputs = entry_layout(weight.shape, unit)
        families.setdefault((len(entries), outputs), []).append((position, name, weight))
    targets = []
    for ordinal, ((dims, outputs), members) in enumerate(families.items()):
        coords, values, segments, start = [], [], [], 0
        for position, name, weight in members:
            entries, _ = entry_layout(weight.shape, unit)
            local = grid(entries)
            layer_coordinate = torch.full((local.shape[0], 1), -1.0 + 2.0 * position / last)
            coords.append(torch.cat([layer_coordinate, local], dim=1))
            values.append(weight.reshape(-1, outputs))
            segments.append(Segment(name, list(weight.shape), start, local.shape[0]))
            start += local.shape[0]
        key = f"model/d{dims}k{outputs}"
        targets.append(FitTarget(key, ordinal, segments, torch.cat(coords), torch.cat(values)))
    return targets


def fourier_features(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[x, sin(2^k pi x), cos(2^k pi x) for k < F]: (..., D) -> (..., D (1 + 2F))."""
    if frequencies == 0:
        return coords
    scales = torch.pi * 2.0 ** torch.arange(frequencies, dtype=coords.dtype, device=coords.device)
    angles = (coords[..., None] * scales).flatten(-2)
    return torch.cat([coords, torch.sin(angles), torch.cos(angles)], dim=-1)
