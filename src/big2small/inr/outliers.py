"""Outlier-Aware Preprocessing: a few large weights are stored exactly, the rest are clipped and standardised.

Per layer: weights with |w - mu| > k sigma (or the top `fraction` by |w - mu|) are outliers. They are stored as
fp16 values with their flat indices coded either as varint gaps or as a bitmap, whichever is smaller. The INR
then fits the clipped, standardised inliers: (clip(w) - mu') / sigma', where mu', sigma' are the inliers' mean and
standard deviation (both stored). Rebuild = INR output * sigma' + mu', then the outliers are written back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from big2small.compressors.bitpack import pack_uint, unpack_uint
from big2small.inr.settings import OutlierSettings


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


# ------------------------------------------------------------------ index coding
def encode_indices(index: torch.Tensor, numel: int) -> tuple[str, torch.Tensor]:
    """-> ("varint" | "bitmap", uint8 bytes): the smaller of gap varints and a numel-bit bitmap."""
    varint = _varint_gaps(index)
    bitmap_size = (numel + 7) // 8
    if len(varint) <= bitmap_size:
        return "varint", torch.tensor(list(varint), dtype=torch.uint8)
    bits = torch.zeros(numel, dtype=torch.int64)
    bits[index] = 1
    return "bitmap", pack_uint(bits, 1)


def decode_indices(coding: str, data: torch.Tensor, count: int, numel: int) -> torch.Tensor:
    if coding == "bitmap":
        index = unpack_uint(data, 1, numel).nonzero().reshape(-1)
    elif coding == "varint":
        index = torch.tensor(_read_varint_gaps(bytes(data.tolist()), count), dtype=torch.int64)
    else:
        raise ValueError(f"unknown outlier index coding {coding!r}")
    if index.numel() != count or (count and int(index.max()) >= numel):
        raise ValueError("outlier indices do not match their stored count or the layer size")
    return index


def encoded_size(index: torch.Tensor, numel: int) -> int:
    return min(len(_varint_gaps(index)), (numel + 7) // 8)


def _varint_gaps(index: torch.Tensor) -> bytes:
    # Gaps (distance to the previous outlier minus one) are small for spread-out outliers: mostly 1-2 bytes.
    out = bytearray()
    previous = -1
    for position in index.tolist():
        gap = position - previous - 1
        previous = position
        while True:
            byte = gap & 0x7F
            gap >>= 7
            out.append(byte | (0x80 if gap else 0))
            if not gap:
                break
    return bytes(out)


def _read_varint_gaps(data: bytes, count: int) -> list[int]:
    positions, previous, value, shift = [], -1, 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            previous += value + 1
            positions.append(previous)
            value, shift = 0, 0
    if len(positions) != count or shift:
        raise ValueError("corrupt varint outlier indices")
    return positions
