"""Frequency-Aware Loss: L = MSE(W', W) + lambda * mean_f( omega(f) |FFT2(W')_f - FFT2(W)_f| ).

FFT2 is taken per layer over the weight reshaped to (C_out, C_in*kh*kw), orthonormalised so the term has the
scale of the weights themselves. omega(f) = (1 + |f| / f_max)^gamma grows with the radial frequency |f| (in
cycles per sample, both axes), so the high-frequency detail a smooth INR tends to lose costs more.
"""

from __future__ import annotations

import functools

import torch

from big2small.numerics import DENOMINATOR_FLOOR


@functools.lru_cache(maxsize=256)
def frequency_weights(rows: int, cols: int, gamma: float) -> torch.Tensor:
    fy = torch.fft.fftfreq(rows)[:, None]
    fx = torch.fft.fftfreq(cols)[None, :]
    radius = torch.sqrt(fy**2 + fx**2)
    return (1 + radius / radius.max().clamp_min(DENOMINATOR_FLOOR)) ** gamma


def frequency_term(difference: torch.Tensor, gamma: float) -> torch.Tensor:
    """mean_f omega(f) |FFT2(predicted) - FFT2(target)| for (..., rows, cols) matrices, one value per matrix, from
    their difference predicted - target (the FFT is linear: one transform suffices)."""
    spectrum = torch.fft.fft2(difference, norm="ortho")
    weights = frequency_weights(difference.shape[-2], difference.shape[-1], float(gamma)).to(difference.device)
    return (weights * spectrum.abs()).mean(dim=(-2, -1))

