import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(1, 16), data=st.data())
def test_pack_unpack_round_trip(bits, data):
    values = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=0, max_size=70))
    tensor = torch.tensor(values, dtype=torch.int64)
    packed = pack_uint(tensor, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == packed_size(len(values), bits)
    assert torch.equal(unpack_uint(packed, bits, len(values)), tensor)


def test_out_of_range_values_are_rejected():
    with pytest.raises(ValueError, match="out of range"):
        pack_uint(torch.tensor([4]), 2)
