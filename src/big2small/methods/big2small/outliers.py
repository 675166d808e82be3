"""Outlier-Aware Preprocessing: a few large weights are stored exactly, the rest are clipped and standardised.

Per layer: weights with |w - mu| > k sigma (or the top `fraction` by |w - mu|) are outliers. They are stored as
fp16 values with their flat indices coded by `encodings.index_codes` (varint gaps or a bitmap, the smaller). The INR
then fits the clipped, standardised inliers: (clip(w) - mu') / sigma', where mu', sigma' are the inliers' mean and
standard deviation (both stored). Rebuild = INR output * sigma' + mu', then the outliers are written back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from big2small.methods.big2small.settings import OutlierSettings


@dataclass
class Preprocessed:
    target: torch.Tensor          # standardised, clipped weight (same shape), what the INR fits
    mean: float
    std: float
    outlier_index: torch.Tensor   # int64 flat indices, ascending
    outlier_value: torch.Tensor   # fp16 values


def preprocess(weight: torch.Tensor, settings: OutlierSettings) -> Preprocessed:
    flat = weight.detach().float().reshape(-1)
    index = torch.zeros(0, dtype=torch.int64)
    clipped = flat
    if settings.enabled and flat.numel() > 1:
        mu, sigma = flat.mean(), flat.std(unbiased=False)
        deviation = (flat - mu).abs()
        if settings.rule == "sigma":
            threshold = settings.k * sigma
        else:
            keep = max(flat.numel() - max(int(round(settings.fraction * flat.numel())), 1), 1)
            threshold = deviation.kthvalue(keep).values
        mask = deviation > threshold
        index = mask.nonzero().reshape(-1)
        clipped = torch.where(mask, mu + torch.sign(flat - mu) * threshold, flat)
    inliers = torch.ones_like(flat, dtype=torch.bool)
    inliers[index] = False
    mean = float(flat[inliers].mean()) if inliers.any() else 0.0
    std = float(flat[inliers].std(unbiased=False)) if inliers.sum() > 1 else 0.0
    std = max(std, 1e-8)
    target = ((clipped - mean) / std).reshape(weight.shape)
    return Preprocessed(target, mean, std, index, flat[index].to(torch.float16))


def restore(standardised: torch.Tensor, mean: float, std: float, index: torch.Tensor,
            value: torch.Tensor) -> torch.Tensor:
    """Undo the standardisation and write the outliers back (differentiable in `standardised`)."""
    weight = standardised * std + mean
    if index.numel() == 0:
        return weight
    flat = weight.reshape(-1)
    flat = flat.index_put((index,), value.to(flat.dtype))
    return flat.reshape(standardised.shape)
