"""Where the kept weights of a pruned tensor sit: a bitmap or gap (run-length) codes, whichever is smaller.

Used by `magnitude` and `lq_prune`. For a flat boolean mask of n entries with m kept:
- bitmap: n bits.
- gaps at b bits: each kept entry is coded by the number of dropped entries before it (since the previous kept
  one). A code equal to F = 2^b - 1 is a filler: "skip F entries, nothing kept here", so gaps of any length fit
  (as in Han et al.'s relative indexing). Cost: (m + number of fillers) x b bits; b is chosen per tensor.
`encode_mask` tries the bitmap and every b in 1..16 and keeps the smallest; `decode_mask` inverts it from the
(kind, bits, code count) triple that the caller stores in its artifact header.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint

BITMAP = 0  # `bits` value that marks a bitmap; 1..16 mark gap codes of that width
MAX_GAP_BITS = 16


@dataclass(frozen=True)
class EncodedMask:
    bits: int          # BITMAP, or the gap-code width
    count: int         # number of codes (bitmap: n; gaps: kept + fillers)
    packed: torch.Tensor  # uint8

    @property
    def nbytes(self) -> int:
        return self.packed.numel()


def gap_codes(mask: torch.Tensor, bits: int) -> torch.Tensor:
    """The gap code sequence of a flat bool mask at `bits` bits (fillers included)."""
    filler = (1 << bits) - 1
    kept = torch.nonzero(mask.reshape(-1), as_tuple=False).reshape(-1)
    previous = torch.cat([torch.tensor([-1]), kept])[:-1]
    gaps = kept - previous - 1
    fillers, rest = gaps // filler, gaps % filler
    entries = fillers + 1
    codes = torch.full((int(entries.sum()),), filler, dtype=torch.int64)
    codes[torch.cumsum(entries, 0) - 1] = rest
    return codes


def _gaps(mask: torch.Tensor) -> torch.Tensor:
    kept = torch.nonzero(mask.reshape(-1), as_tuple=False).reshape(-1)
    return kept - torch.cat([torch.tensor([-1]), kept])[:-1] - 1


def gap_code_count(mask: torch.Tensor, bits: int, gaps: torch.Tensor | None = None) -> int:
    """len(gap_codes(mask, bits)) without building it."""
    gaps = _gaps(mask) if gaps is None else gaps
    return int(gaps.numel() + (gaps // ((1 << bits) - 1)).sum())


def cheapest_coding(mask: torch.Tensor) -> tuple[int, int, int]:
    """(bits, code count, bytes) of the smallest coding of `mask` (bits == BITMAP for the bitmap)."""
    n = mask.numel()
    best = (BITMAP, n, packed_size(n, 1))
    gaps = _gaps(mask)
    for bits in range(1, MAX_GAP_BITS + 1):
        count = gap_code_count(mask, bits, gaps)
        size = packed_size(count, bits)
        if size < best[2]:
            best = (bits, count, size)
    return best


def encode_mask(mask: torch.Tensor) -> EncodedMask:
    flat = mask.reshape(-1).bool()
    bits, count, _ = cheapest_coding(flat)
    if bits == BITMAP:
        return EncodedMask(BITMAP, count, pack_uint(flat.to(torch.int64), 1))
    return EncodedMask(bits, count, pack_uint(gap_codes(flat, bits), bits))


def decode_mask(packed: torch.Tensor, bits: int, count: int, numel: int) -> torch.Tensor:
    """Flat bool mask of `numel` entries from an encode_mask result."""
    if bits == BITMAP:
        if count != numel:
            raise ValueError(f"bitmap of {count} entries for a tensor of {numel}")
        return unpack_uint(packed, 1, count).bool()
    codes = unpack_uint(packed, bits, count)
    filler = (1 << bits) - 1
    is_filler = codes == filler
    positions = torch.cumsum(torch.where(is_filler, filler, codes + 1), 0) - 1
    kept = positions[~is_filler]
    if kept.numel() and int(kept[-1]) >= numel:
        raise ValueError("gap codes point past the end of the tensor")
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[kept] = True
    return mask


def encoded_size(mask: torch.Tensor) -> int:
    """Bytes of the cheapest coding (for budgeting before encoding)."""
    return cheapest_coding(mask.reshape(-1).bool())[2]
