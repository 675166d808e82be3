"""Integer codes stored at their information content: a static categorical model per tensor and an rANS stream.

The coder is `constriction`'s AnsCoder (rANS with 32-bit words, a well-kept Rust library; docs/decisions.md says
why). A stream is one uint8 tensor:

    varint lo           the smallest symbol that occurs
    varint span         the largest minus the smallest
    span + 1 varints    how often each symbol lo..lo+span occurs (the exact histogram: the model's table)
    words               the rANS stream, uint32 little-endian (none when a single symbol occurs)

Both sides build the model from the same histogram, so the table is the whole model and its bytes are counted.
Decoding is bounded by what the caller declares: the alphabet (symbols 0..alphabet-1) and the symbol count, both
from a header already checked against the model, so a forged table or stream can never make it allocate more
than the declared tensor. A stream is refused (ValueError) when its table does not fit the declaration, when it
has words left over, or when the symbols it decodes do not have the histogram its table states (which is what a
truncated or altered stream decodes to).
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from big2small.encodings.varints import MAX_VARINT_BYTES, read_varint, write_varint

RANS = "rans"      # the coding of a tensor stored as an rANS stream
PACKED = "packed"  # the coding of a tensor stored at a fixed width (bit-packed by its compressor)
CODINGS = (PACKED, RANS)
WORD_BYTES = 4


def rans_encode(symbols: torch.Tensor, alphabet: int) -> torch.Tensor:
    """Integers in 0..alphabet-1 (any shape, flattened) -> the uint8 stream described above."""
    flat = symbols.reshape(-1).to(torch.int64)
    if flat.numel() == 0:
        raise ValueError("an rANS stream holds at least one symbol")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= alphabet:
        raise ValueError(f"symbols out of range for an alphabet of {alphabet}")
    counts = torch.bincount(flat - low, minlength=high - low + 1).tolist()
    table = bytearray()
    write_varint(low, table)
    write_varint(high - low, table)
    for count in counts:
        write_varint(count, table)
    words = b""
    if high > low:
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse((flat - low).numpy().astype(np.int32), _model(counts))
        words = coder.get_compressed().astype("<u4").tobytes()
    return torch.frombuffer(bytearray(table + words), dtype=torch.uint8)


def rans_decode(stream: torch.Tensor, alphabet: int, count: int) -> torch.Tensor:
    """The `count` symbols (int64) of a stream made by rans_encode for this alphabet; ValueError when it is not one."""
    data = stream.numpy()
    table = data[: MAX_VARINT_BYTES * (alphabet + 2)].tobytes()  # the table lies within these bytes
    low, span, at = symbol_range(table, alphabet, "rANS")
    counts = []
    for _ in range(span + 1):
        value, at = read_varint(table, at)
        counts.append(value)
    if sum(counts) != count:
        raise ValueError(f"the rANS table counts {sum(counts)} symbols, the header declares {count}")
    words = data[at:]
    coder = word_coder(words, span, "rANS")
    if coder is None:
        return torch.full((count,), low, dtype=torch.int64)
    decoded = coder.decode(_model(counts), count)
    if not coder.is_empty():
        raise ValueError("the rANS stream holds words beyond its symbols")
    if np.bincount(decoded, minlength=span + 1).tolist() != counts:
        raise ValueError("the rANS stream does not decode to the histogram its table states (truncated or altered)")
    symbols = torch.from_numpy(decoded).to(torch.int64)
    return symbols.add_(low) if low else symbols


def symbol_range(head: bytes, alphabet: int, stream: str) -> tuple[int, int, int]:
    """(lo, span, position after them) of the two varints a stream begins with; ValueError when the symbols
    lo..lo+span do not fit the alphabet."""
    low, at = read_varint(head, 0)
    span, at = read_varint(head, at)
    if low + span >= alphabet:
        raise ValueError(f"the {stream} stream covers symbols {low}..{low + span}, beyond an alphabet of {alphabet}")
    return low, span, at


def word_coder(words: np.ndarray, span: int, stream: str):
    """An AnsCoder to decode a stream's words (uint8, little-endian uint32 words), None for a stream of one symbol
    (span 0), which holds none; ValueError when the words are not what the span needs."""
    if span == 0:
        if words.size:
            raise ValueError(f"a {stream} stream of one symbol holds words")
        return None
    if not words.size or words.size % WORD_BYTES:
        raise ValueError(f"the {stream} stream holds {words.size} bytes, not whole {WORD_BYTES}-byte words")
    return constriction.stream.stack.AnsCoder(np.frombuffer(words.tobytes(), dtype="<u4").astype(np.uint32))


def smaller_coding(symbols: torch.Tensor, alphabet: int, packed: torch.Tensor) -> tuple[str, torch.Tensor]:
    """(RANS, stream) when the stream of `symbols` is smaller than their fixed-width `packed` bytes, else
    (PACKED, packed)."""
    if symbols.numel() == 0:
        return PACKED, packed
    stream = rans_encode(symbols, alphabet)
    return (RANS, stream) if stream.numel() < packed.numel() else (PACKED, packed)


def _model(counts: list[int]):
    frequencies = np.asarray(counts, dtype=np.float64)
    return constriction.stream.model.Categorical(frequencies / frequencies.sum(), perfect=False)
