"""Coordinates of weight entries, each index normalised to [-1, 1], computed from flat indices on the fly."""

from __future__ import annotations

import torch


def grid_coordinates(flat_index: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
    """Coordinates of entries of several tensors that share a number of dimensions.

    flat_index: (G, B) row-major indices into tensor g; shapes: (G, D) int64 sizes. Returns (G, B, D) with
    index i of a dimension of size n mapped to -1 + 2 i / (n - 1) (0 for n = 1).
    """
    strides = torch.ones_like(shapes)
    for d in range(shapes.shape[1] - 2, -1, -1):
        strides[:, d] = strides[:, d + 1] * shapes[:, d + 1]
    index = (flat_index[:, :, None] // strides[:, None, :]) % shapes[:, None, :]
    denominator = (shapes - 1).clamp_min(1).to(torch.float32)[:, None, :]
    return torch.where(shapes[:, None, :] > 1, index.to(torch.float32) * 2 / denominator - 1, 0.0)


def fourier_features(coords: torch.Tensor, frequencies: int) -> torch.Tensor:
    """[x, sin(2^k pi x), cos(2^k pi x) for k < F]: (..., D) -> (..., D (1 + 2F))."""
    if frequencies == 0:
        return coords
    scales = torch.pi * 2.0 ** torch.arange(frequencies, dtype=coords.dtype, device=coords.device)
    angles = (coords[..., None] * scales).flatten(-2)
    return torch.cat([coords, torch.sin(angles), torch.cos(angles)], dim=-1)
