"""Integer codes of a conv weight coded under an adaptive model with a context: how many of the kernel's earlier
codes are nonzero.

Within one k-element kernel (a conv's kh x kw codes for one output and one input channel), a code is more likely
zero the more of the codes before it are zero, so each code is coded under the symbol counts of its context
(0..k-1 nonzero codes before it in its kernel), as DeepCABAC's significance contexts do. The counts adapt as the
codes go by (each starts at PRIOR_COUNT, a Krichevsky-Trofimov estimate), so no table is stored. They adapt in
rounds that decoding can take whole: the kernels go in chunks of FIRST_CHUNK kernels, doubling up to MAX_CHUNK, and
within a chunk position by position; every code of a round is coded under the counts of the rounds before it, so a
round decodes in one call. A stream is one uint8 tensor:

    varint lo      the smallest symbol that occurs
    varint span    the largest minus the smallest
    words          an rANS stream (constriction's AnsCoder, 32-bit words, little-endian); none when span is 0

Decoding is bounded by what the caller declares (alphabet, count and kernel size, from a checked header): it never
holds more than PIECE_PROBABILITIES probabilities at once. The encoder knows every code, so it computes every
round's counts at once and codes in a few calls. A stream is refused (ValueError) when its symbol range
does not fit the alphabet, when it is not whole words, or when decoding the declared symbols does not end the
stream exactly where it began (what a truncated, extended or altered stream does, but for a chance of about 2^-32).
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from big2small.encodings.entropy_codes import RANS, symbol_range, word_coder
from big2small.encodings.varints import MAX_VARINT_BYTES, write_varint

CONTEXT = "context"  # the coding of a tensor stored as a stream of this module
STREAMS = (RANS, CONTEXT)  # the codings of integer codes stored as a stream instead of packed at their width
PRIOR_COUNT = 0.5
FIRST_CHUNK, MAX_CHUNK = 16, 1 << 16
PIECE_PROBABILITIES = 1 << 22  # 32 MB of float64: the most either side holds at once
# Codes of at most this many symbols (4 bits) are offered the context: at 4 bits it saves at most 0.2 % of the
# bytes on ResNet-20 (benchmarks/context_coding.py), wider codes have fewer zeros still, and their alphabets make the
# per-code models slow to build.
MAX_ALPHABET = 16


def offered_context_stream(symbols: torch.Tensor, alphabet: int, context: tuple[int, int] | None) -> torch.Tensor | None:
    """The context-coded stream of `symbols` where they are offered one: a `context` of (the zero symbol, codes per
    kernel) given, an alphabet of at most MAX_ALPHABET symbols, and symbols to code; else None."""
    if context is None or alphabet > MAX_ALPHABET or symbols.numel() == 0:
        return None
    return context_encode(symbols, alphabet, *context)


def context_encode(symbols: torch.Tensor, alphabet: int, zero: int, kernel: int) -> torch.Tensor:
    """Integers in 0..alphabet-1 (numel a multiple of `kernel`, kernels contiguous) -> the uint8 stream above;
    `zero` is the symbol of the code 0."""
    flat = symbols.reshape(-1).to(torch.int64)
    if flat.numel() == 0 or kernel < 1 or flat.numel() % kernel:
        raise ValueError(f"a context stream holds whole kernels of {kernel} symbols, got {flat.numel()}")
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= alphabet:
        raise ValueError(f"symbols out of range for an alphabet of {alphabet}")
    head = bytearray()
    write_varint(low, head)
    write_varint(high - low, head)
    if high == low:
        return torch.frombuffer(head, dtype=torch.uint8)
    kernels = (flat - low).numpy().astype(np.int32).reshape(-1, kernel)
    symbols, contexts, rounds = _coding_order(kernels, zero - low)
    count = high - low + 1
    # Each round's counts are the prior plus the symbols of every round before it, per context.
    seen = np.bincount((rounds * kernel + contexts) * count + symbols, minlength=(int(rounds[-1]) + 1) * kernel * count)
    seen = seen.reshape(-1, kernel, count)
    before = PRIOR_COUNT + (np.cumsum(seen, axis=0) - seen)
    tables = before / before.sum(axis=2, keepdims=True)
    coder = constriction.stream.stack.AnsCoder()
    family = constriction.stream.model.Categorical(perfect=False)
    piece = _piece(count)
    for start in reversed(range(0, symbols.size, piece)):
        part = slice(start, start + piece)
        coder.encode_reverse(symbols[part], family, tables[rounds[part], contexts[part]])
    words = coder.get_compressed().astype("<u4").tobytes()
    return torch.frombuffer(bytearray(head + words), dtype=torch.uint8)


def context_decode(stream: torch.Tensor, alphabet: int, count: int, zero: int, kernel: int) -> torch.Tensor:
    """The `count` symbols (int64) of a stream made by context_encode with these arguments; ValueError when it is
    not one."""
    if count < 1 or kernel < 1 or count % kernel:
        raise ValueError(f"a context stream holds whole kernels of {kernel} symbols, not {count}")
    data = stream.numpy()
    low, span, at = symbol_range(data[: 2 * MAX_VARINT_BYTES].tobytes(), alphabet, "context")
    words = data[at:]
    coder = word_coder(words, span, "context")
    if coder is None:
        return torch.full((count,), low, dtype=torch.int64)
    family = constriction.stream.model.Categorical(perfect=False)
    kernels = np.zeros((count // kernel, kernel), dtype=np.int32)
    model = _Counts(kernel, span + 1)
    piece = _piece(span + 1)
    for start, stop, position in _rounds(kernels.shape[0], kernel):
        if position == 0:  # a new chunk: no code of its kernels is decoded yet
            contexts = np.zeros(stop - start, dtype=np.int64)
        for first in range(0, stop - start, piece):  # a round's symbols share its counts: decoded in pieces
            part = slice(start + first, min(stop, start + first + piece))
            kernels[part, position] = coder.decode(family, model.probabilities(contexts[first:first + piece]))
        model.add(contexts, kernels[start:stop, position])
        contexts = contexts + (kernels[start:stop, position] != zero - low)
    if not coder.is_empty():
        raise ValueError("the context stream does not end where its symbols do (truncated, extended or altered)")
    symbols = torch.from_numpy(kernels.reshape(-1)).to(torch.int64)
    return symbols.add_(low) if low else symbols


class _Counts:
    """The adaptive symbol counts of each context."""

    def __init__(self, contexts: int, symbols: int) -> None:
        self.counts = np.full((contexts, symbols), PRIOR_COUNT)

    def probabilities(self, contexts: np.ndarray) -> np.ndarray:
        return (self.counts / self.counts.sum(axis=1, keepdims=True))[contexts]

    def add(self, contexts: np.ndarray, symbols: np.ndarray) -> None:
        pairs = contexts * self.counts.shape[1] + symbols
        self.counts += np.bincount(pairs, minlength=self.counts.size).reshape(self.counts.shape)


def _coding_order(kernels: np.ndarray, zero: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbol, context, round) of every code of `kernels` (kernels x positions), in coding order."""
    nonzero = kernels != zero
    contexts = np.cumsum(nonzero, axis=1) - nonzero  # nonzero codes before each in its kernel
    order, rounds = [], []
    for index, (start, stop, position) in enumerate(_rounds(*kernels.shape)):
        order.append(np.arange(start, stop) * kernels.shape[1] + position)
        rounds.append(np.full(stop - start, index))
    order = np.concatenate(order)
    return kernels.reshape(-1)[order], contexts.reshape(-1)[order], np.concatenate(rounds)


def _piece(symbols: int) -> int:
    """How many codes one call into the coder takes: at most PIECE_PROBABILITIES probabilities at once."""
    return max(1, PIECE_PROBABILITIES // symbols)


def _rounds(kernels: int, kernel: int):
    """(first kernel, end kernel, position) of each round, in coding order."""
    start, chunk = 0, FIRST_CHUNK
    while start < kernels:
        stop = min(kernels, start + chunk)
        for position in range(kernel):
            yield start, stop, position
        start, chunk = stop, min(2 * chunk, MAX_CHUNK)
