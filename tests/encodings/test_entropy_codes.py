"""rANS streams of integer codes: exact round trips, sizes near the entropy, and refusal of forged streams."""

import math

import pytest
import torch

from big2small.encodings.bitpack import pack_uint
from big2small.encodings.entropy_codes import PACKED, RANS, rans_decode, rans_encode, smaller_coding
from big2small.encodings.varints import read_varint, write_varint


def laplace_codes(count: int, bits: int, scale: float) -> torch.Tensor:
    limit = 2 ** (bits - 1) - 1
    noise = torch.distributions.Laplace(0.0, scale).sample((count,))
    return (torch.round(noise).clamp(-limit, limit) + limit).long()


def entropy_bytes(symbols: torch.Tensor) -> float:
    counts = torch.bincount(symbols).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(counts[counts > 0] * torch.log2(p)).sum()) / 8


@pytest.mark.parametrize("bits,scale", [(3, 0.7), (4, 1.5), (8, 12.0)])
def test_streams_round_trip_within_a_table_and_a_word_of_the_entropy(bits, scale):
    torch.manual_seed(bits)
    symbols = laplace_codes(20_000, bits, scale)
    stream = rans_encode(symbols, 2 ** bits - 1)
    assert stream.dtype == torch.uint8
    assert torch.equal(rans_decode(stream, 2 ** bits - 1, symbols.numel()), symbols)
    table = 2 + 3 * (int(symbols.max()) - int(symbols.min()) + 1)  # at most 3 bytes per count of 20,000
    assert stream.numel() <= math.ceil(entropy_bytes(symbols) * 1.002) + table + 8


def test_a_tensor_of_one_symbol_is_its_table_alone():
    symbols = torch.full((5000,), 3)
    stream = rans_encode(symbols, 7)
    assert stream.numel() == 4  # lo, span and one count of 5000 (two varint bytes)
    assert torch.equal(rans_decode(stream, 7, 5000), symbols)


def test_the_smaller_coding_is_kept():
    torch.manual_seed(0)
    skewed = laplace_codes(4000, 4, 0.8)
    coding, data = smaller_coding(skewed, 15, pack_uint(skewed, 4))
    assert coding == RANS and data.numel() < 2000
    uniform = torch.randint(0, 16, (4000,))
    coding, data = smaller_coding(uniform, 16, pack_uint(uniform, 4))
    assert coding == PACKED and data.numel() == 2000


def forged(stream: torch.Tensor, edit) -> torch.Tensor:
    data = bytearray(stream.numpy().tobytes())
    edit(data)
    return torch.frombuffer(data, dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def _set_first_count(data: bytearray, value: int) -> None:
    """Rewrite the table's first count (the varint after lo and span)."""
    _, at = read_varint(bytes(data), 0)
    _, at = read_varint(bytes(data), at)
    _, end = read_varint(bytes(data), at)
    encoded = bytearray()
    write_varint(value, encoded)
    data[at:end] = encoded


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.__setitem__(slice(len(d) - 8, len(d)), b""), "histogram|beyond"),  # truncated by two words
    (lambda d: d.extend(b"\x01\x00\x00\x00"), "beyond its symbols|histogram"),   # one word too many
    (lambda d: d.__setitem__(slice(len(d) - 1, len(d)), b""), "whole 4-byte words"),  # cut inside a word
    (lambda d: d.__setitem__(1, 200), "alphabet|varint"),                         # span beyond the alphabet
    (lambda d: _set_first_count(d, 10 ** 12), "declares"),                        # more symbols than declared
    (lambda d: d.__setitem__(slice(0, len(d)), b"\xff" * 12), "varint"),          # a varint that never ends
    (lambda d: d.__setitem__(slice(0, len(d)), b""), "past the end"),             # nothing at all
])
def test_forged_streams_are_refused_before_decoding_more_than_declared(edit, message):
    torch.manual_seed(1)
    symbols = laplace_codes(3000, 4, 1.0)
    stream = rans_encode(symbols, 15)
    with pytest.raises(ValueError, match=message):
        rans_decode(forged(stream, edit), 15, symbols.numel())


def test_out_of_range_symbols_are_not_encoded():
    with pytest.raises(ValueError, match="out of range"):
        rans_encode(torch.tensor([0, 7]), 7)
