"""Sorted flat indices (Big2Small's outlier positions) as bytes: varint-coded gaps or a bitmap, the smaller.

A gap is the distance to the previous index minus one; spread-out indices give small gaps of one or two bytes.
"""

from __future__ import annotations

import torch

from big2small.encodings.bitpack import pack_uint, unpack_uint
from big2small.encodings.varints import read_varint, write_varint


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
    out = bytearray()
    previous = -1
    for position in index.tolist():
        write_varint(position - previous - 1, out)
        previous = position
    return bytes(out)


def _read_varint_gaps(data: bytes, count: int) -> list[int]:
    positions, previous, at = [], -1, 0
    while at < len(data):
        gap, at = read_varint(data, at)
        previous += gap + 1
        positions.append(previous)
    if len(positions) != count:
        raise ValueError("corrupt varint outlier indices")
    return positions
