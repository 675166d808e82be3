import torch

from big2small.encodings.sparse_masks import BITMAP, decode_mask, encode_mask, encoded_size


def _round_trip(mask):
    encoded = encode_mask(mask)
    assert encoded.nbytes == encoded_size(mask)
    return encoded, decode_mask(encoded.packed, encoded.bits, encoded.count, mask.numel())


def test_dense_mask_uses_the_bitmap_and_round_trips():
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.5
    encoded, decoded = _round_trip(mask)
    assert encoded.bits == BITMAP and encoded.nbytes == 125
    assert torch.equal(decoded, mask)


def test_sparse_mask_uses_gap_codes_smaller_than_a_bitmap():
    mask = torch.zeros(10_000, dtype=torch.bool)
    mask[torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:100]] = True
    encoded, decoded = _round_trip(mask)
    assert encoded.bits != BITMAP and encoded.nbytes < 10_000 // 8
    assert torch.equal(decoded, mask)


def test_long_gaps_need_fillers_and_still_round_trip():
    mask = torch.zeros(70_000, dtype=torch.bool)
    mask[[0, 3, 69_999]] = True  # a gap longer than any 16-bit code
    encoded, decoded = _round_trip(mask)
    assert encoded.count > 3  # fillers were used
    assert torch.equal(decoded, mask)


def test_empty_and_full_masks():
    for mask in (torch.zeros(37, dtype=torch.bool), torch.ones(37, dtype=torch.bool)):
        assert torch.equal(_round_trip(mask)[1], mask)
