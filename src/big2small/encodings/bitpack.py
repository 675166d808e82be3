"""Pack unsigned integers of any width 1..16 bits densely into bytes (little-endian bit order)."""

from __future__ import annotations

import math

import torch


def packed_size(count: int, bits: int) -> int:
    return math.ceil(count * bits / 8)


def pack_uint(values: torch.Tensor, bits: int) -> torch.Tensor:
    """values: integers in [0, 2**bits) of any shape -> uint8 tensor of packed_size(numel, bits) bytes."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    flat = values.reshape(-1).to(torch.int32)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"values out of range for {bits}-bit packing")
    shifts = torch.arange(bits, dtype=torch.int32)
    bit_matrix = ((flat[:, None] >> shifts) & 1).to(torch.uint8).reshape(-1)
    pad = (-bit_matrix.numel()) % 8
    if pad:
        bit_matrix = torch.cat([bit_matrix, torch.zeros(pad, dtype=torch.uint8)])
    weights = (1 << torch.arange(8, dtype=torch.int32)).to(torch.int32)
    return (bit_matrix.reshape(-1, 8).to(torch.int32) * weights).sum(dim=1).to(torch.uint8)


def unpack_uint(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of pack_uint: the first `count` values as int64."""
    if packed.numel() != packed_size(count, bits):
        raise ValueError(f"expected {packed_size(count, bits)} packed bytes for {count} x {bits} bits, got {packed.numel()}")
    bit_matrix = ((packed.to(torch.int32)[:, None] >> torch.arange(8, dtype=torch.int32)) & 1).reshape(-1)
    bit_matrix = bit_matrix[: count * bits].reshape(count, bits).to(torch.int64)
    return (bit_matrix << torch.arange(bits, dtype=torch.int64)).sum(dim=1)
