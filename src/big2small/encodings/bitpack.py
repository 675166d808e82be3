"""Pack unsigned integers of any width 1..16 bits densely into bytes (little-endian bit order): value i's bit j
is bit i * bits + j of the stream, counting from the least significant bit of the first byte."""

from __future__ import annotations

import math

import numpy as np
import torch


def packed_size(count: int, bits: int) -> int:
    return math.ceil(count * bits / 8)


def pack_uint(values: torch.Tensor, bits: int) -> torch.Tensor:
    """values: integers in [0, 2**bits) of any shape -> uint8 tensor of packed_size(numel, bits) bytes."""
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    flat = values.reshape(-1)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ValueError(f"values out of range for {bits}-bit packing")
    if bits == 8:
        return flat.to(torch.uint8).clone()
    # Each value's two little-endian bytes as 16 bits, least significant first; its low `bits` are its bits.
    pairs = flat.numpy().astype("<u2").view(np.uint8).reshape(-1, 2)
    bit_matrix = np.unpackbits(pairs, axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(bit_matrix.reshape(-1), bitorder="little"))


def unpack_uint(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of pack_uint: the first `count` values as int64."""
    if packed.numel() != packed_size(count, bits):
        raise ValueError(f"expected {packed_size(count, bits)} packed bytes for {count} x {bits} bits, got {packed.numel()}")
    if bits == 8:
        return packed.to(torch.int64)
    stream = np.unpackbits(packed.numpy(), bitorder="little", count=count * bits).reshape(count, bits)
    pairs = np.zeros((count, 16), dtype=np.uint8)
    pairs[:, :bits] = stream
    values = np.packbits(pairs, axis=1, bitorder="little").view("<u2").reshape(-1)
    return torch.from_numpy(values.astype(np.int64))
