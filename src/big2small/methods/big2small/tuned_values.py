"""The tuned 1-D parameters in the artifact, stored as their changes from the model's own values.

The refinement moves BatchNorm scales and shifts and biases by little (on ResNet-20 about 1 % of their size), and
the model's own values are part of the rest of the model, which every rebuild starts from. So each tuned tensor's
change d is stored on a symmetric grid: the level round(d / s) in -L..L with L = 2^(bits-1) - 1 and the step
s = max|d| / L, one fp16 step per tensor (`tuned_scales`, in the model's parameter order) and every level plus L
bit-packed at `bits` bits (`tuned_levels`). The rebuilt value is the model's own plus level x step, within s / 2
of the tuned one. Fixed-width levels keep the stored size a function of the count alone, so every sizing pass of
the budget counts exactly the bytes the artifact will hold.
"""

from __future__ import annotations

import torch

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.encodings.dtype_bytes import FP16_BYTES

MIN_BITS, MAX_BITS = 2, 8
LEVELS_TENSOR, SCALES_TENSOR = "tuned_levels", "tuned_scales"


def half_levels(bits: int) -> int:
    """L: the levels on each side of zero."""
    return (1 << (bits - 1)) - 1


def stored_bytes(sizes: list[int], bits: int | None) -> int:
    """Bytes of tensors of these element counts as stored: fp16 values (bits None) or levels plus one step each."""
    if bits is None:
        return FP16_BYTES * sum(sizes)
    return packed_size(sum(sizes), bits) + FP16_BYTES * len(sizes)


def encode(changes: list[torch.Tensor], bits: int) -> dict[str, torch.Tensor]:
    """The stored tensors of each tuned tensor's change from the model's own value."""
    levels = half_levels(bits)
    scales, symbols = [], []
    for change in changes:
        change = change.detach().float().reshape(-1)
        step = (change.abs().max() / levels).to(torch.float16)  # rounded first: the decoder multiplies by this one
        scales.append(step)
        step = step.float()
        level = torch.round(change / step) if step > 0 else torch.zeros_like(change)
        symbols.append(level.clamp(-levels, levels).to(torch.int64) + levels)
    return {LEVELS_TENSOR: pack_uint(torch.cat(symbols), bits), SCALES_TENSOR: torch.stack(scales).reshape(-1)}


def decode(tensors: dict[str, torch.Tensor], sizes: list[int], bits: int) -> list[torch.Tensor]:
    """The changes (fp32, flat) of tensors of these element counts; ValueError when the stored sizes do not fit."""
    levels_stored, scales = tensors.get(LEVELS_TENSOR), tensors.get(SCALES_TENSOR)
    if levels_stored is None or scales is None or scales.numel() != len(sizes):
        raise ValueError(f"the tuned values need {LEVELS_TENSOR} and {len(sizes)} {SCALES_TENSOR}")
    levels = half_levels(bits)
    symbols = unpack_uint(levels_stored, bits, sum(sizes))  # ValueError unless exactly the packed size
    if symbols.numel() and int(symbols.max()) > 2 * levels:
        raise ValueError(f"{LEVELS_TENSOR} holds a level beyond +-{levels}")
    changes = []
    for step, chunk in zip(scales.float(), symbols.split(sizes), strict=True):
        changes.append((chunk - levels).float() * step)
    return changes
