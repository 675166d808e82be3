"""Outlier index codes: varint gaps or a bitmap, whichever is smaller."""

import torch

from big2small.encodings.index_codes import decode_indices, encode_indices, encoded_size


def test_index_coding_round_trips_and_picks_the_smaller_code():
    sparse = torch.tensor([3, 130, 20_000])
    coding, data = encode_indices(sparse, 50_000)
    assert coding == "varint" and data.numel() == encoded_size(sparse, 50_000) < 50_000 // 8
    assert decode_indices(coding, data, 3, 50_000).tolist() == sparse.tolist()
    dense = torch.arange(0, 1000, 3)
    coding, data = encode_indices(dense, 1000)
    assert coding == "bitmap" and data.numel() == 125
    assert decode_indices(coding, data, dense.numel(), 1000).tolist() == dense.tolist()
