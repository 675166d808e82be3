"""Context-coded streams of a conv's integer codes: exact round trips, fewer bytes than one static model where
kernels hold their zeros together, and refusal of forged streams."""

import pytest
import torch

from big2small.encodings.context_codes import context_decode, context_encode
from big2small.encodings.entropy_codes import rans_encode

ZERO = 3  # the symbol of the code 0 in an alphabet of 7 (codes -3..3)


def clustered_kernels(kernels: int, kernel: int = 9, seed: int = 0) -> torch.Tensor:
    """Codes -3..3 (as symbols 0..6) whose kernels are mostly all-zero or mostly nonzero, as a conv's often are."""
    generator = torch.Generator().manual_seed(seed)
    busy = torch.rand(kernels, 1, generator=generator) < 0.3
    nonzero = torch.rand(kernels, kernel, generator=generator) < torch.where(busy, 0.8, 0.05)
    magnitude = torch.randint(1, 4, (kernels, kernel), generator=generator)
    sign = torch.where(torch.rand(kernels, kernel, generator=generator) < 0.5, -1, 1)
    return (torch.where(nonzero, magnitude * sign, 0) + ZERO).reshape(-1)


@pytest.mark.parametrize("kernels,kernel", [(1, 9), (15, 9), (17, 9), (3000, 9), (40_000, 1), (500, 25)])
def test_streams_round_trip_at_every_chunk_boundary(kernels, kernel):
    symbols = clustered_kernels(kernels, kernel, seed=kernels)
    stream = context_encode(symbols, 7, ZERO, kernel)
    assert stream.dtype == torch.uint8
    assert torch.equal(context_decode(stream, 7, symbols.numel(), ZERO, kernel), symbols)


def test_kernels_that_hold_their_zeros_together_take_fewer_bytes_than_one_static_model():
    symbols = clustered_kernels(4000)
    context = context_encode(symbols, 7, ZERO, 9).numel()
    static = rans_encode(symbols, 7).numel()
    assert context < 0.9 * static


def test_codes_without_zeros_and_of_one_symbol_round_trip():
    nonzero = torch.randint(4, 7, (900,))  # no code is 0: every context is its position
    assert torch.equal(context_decode(context_encode(nonzero, 7, ZERO, 9), 7, 900, ZERO, 9), nonzero)
    same = torch.full((900,), 5)
    stream = context_encode(same, 7, ZERO, 9)
    assert stream.numel() == 2  # lo and span, no words
    assert torch.equal(context_decode(stream, 7, 900, ZERO, 9), same)


def test_symbols_that_are_not_whole_kernels_or_out_of_the_alphabet_are_refused():
    with pytest.raises(ValueError, match="whole kernels"):
        context_encode(torch.zeros(10, dtype=torch.long), 7, ZERO, 9)
    with pytest.raises(ValueError, match="alphabet"):
        context_encode(torch.full((9,), 7), 7, ZERO, 9)


def forged(stream: torch.Tensor, edit) -> torch.Tensor:
    data = bytearray(stream.numpy().tobytes())
    edit(data)
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.__setitem__(slice(len(d) - 8, len(d)), b""), "does not end"),        # truncated by two words
    (lambda d: d.extend(b"\x01\x00\x00\x00"), "does not end"),                        # one word too many
    (lambda d: d.__setitem__(len(d) - 5, d[len(d) - 5] ^ 0x10), "does not end"),      # one bit flipped
    (lambda d: d.__setitem__(slice(len(d) - 1, len(d)), b""), "whole 4-byte words"),  # cut inside a word
    (lambda d: d.__setitem__(1, 100), "alphabet"),                                     # span beyond the alphabet
    (lambda d: d.__setitem__(slice(0, len(d)), b"\xff" * 12), "varint"),              # a varint that never ends
    (lambda d: d.__setitem__(slice(0, len(d)), b""), "past the end"),                 # nothing at all
])
def test_forged_streams_are_refused(edit, message):
    symbols = clustered_kernels(2000, seed=1)
    stream = forged(context_encode(symbols, 7, ZERO, 9), edit)
    with pytest.raises(ValueError, match=message):
        context_decode(stream, 7, symbols.numel(), ZERO, 9)


def test_a_declared_count_that_is_not_whole_kernels_is_refused_before_decoding():
    stream = context_encode(clustered_kernels(100), 7, ZERO, 9)
    with pytest.raises(ValueError, match="whole kernels"):
        context_decode(stream, 7, 899, ZERO, 9)
