"""hyper: groups of weights replaced by the nearest point of an irrational winding on the torus."""

import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.hyper import HyperCompression, decode, encode, trajectory
from tests.methods.roundtrip import digits_sized_cnn, round_trip


def brute_force_nearest(weight: torch.Tensor, group_size: int, bits: int) -> torch.Tensor:
    values = weight.reshape(-1).double()
    lo, hi = values.min(), values.max()
    groups = ((values - lo) / (hi - lo)).reshape(-1, group_size)
    return torch.cdist(groups, trajectory(group_size, bits)).argmin(dim=1)


@pytest.mark.parametrize("group_size", [1, 2, 3])
def test_every_group_gets_its_nearest_trajectory_point(group_size):
    weight = torch.randn(6, 7 * group_size, generator=torch.Generator().manual_seed(group_size))
    theta, _ = encode(weight, group_size, bits=7)
    expected = brute_force_nearest(weight, group_size, bits=7)
    points = trajectory(group_size, 7)
    # Equal distances may break ties differently; the chosen point must be as near as the brute-force one.
    values = weight.reshape(-1).double()
    groups = ((values - values.min()) / (values.max() - values.min())).reshape(-1, group_size)
    chosen = (groups - points[theta]).norm(dim=1)
    best = (groups - points[expected]).norm(dim=1)
    assert torch.all(chosen <= best + 1e-3)  # the fp16 range may shift the normalisation by ~1e-3


def test_single_weights_at_16_bits_are_reproduced_within_a_few_trajectory_gaps():
    weight = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    theta, layer_range = encode(weight, group_size=1, bits=16)
    rebuilt = decode(theta, layer_range, 1, 16, weight.shape)
    span = float(weight.max() - weight.min())
    # 2^16 points of frac(theta * a) on [0, 1) leave gaps of at most a few 2^-16 (three-gap theorem).
    assert float((rebuilt - weight).abs().max()) <= 4 * span / 2**16


def test_more_bits_lower_the_error():
    weight = torch.randn(64, 64, generator=torch.Generator().manual_seed(1))
    errors = []
    for bits in (4, 8, 12):
        theta, layer_range = encode(weight, 2, bits)
        errors.append(float((decode(theta, layer_range, 2, bits, weight.shape) - weight).norm() / weight.norm()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_the_range_is_stored_outward_so_no_weight_is_clipped():
    weight = torch.tensor([[-1.2345678, 0.1], [0.2, 2.3456789]])
    _, layer_range = encode(weight, 1, 8)
    assert layer_range.dtype == torch.float16
    assert float(layer_range[0]) <= -1.2345678 and float(layer_range[1]) >= 2.3456789


def test_fixed_bits_give_the_expected_ratio_and_a_faithful_rebuild(tmp_path):
    model = digits_sized_cnn()
    compressed, rebuilt, ratio = round_trip(HyperCompression(bits=8, group_size=2), model, tmp_path)
    assert 7.0 < ratio <= 8.0  # 2 fp32 weights per byte, less the header and ranges
    for name in compressed.meta["replaced"]:
        original, restored = model.get_parameter(name).detach(), rebuilt.get_parameter(name).detach()
        assert float((restored - original).norm() / original.norm()) < 0.2


def test_auto_group_size_follows_the_target():
    assert HyperCompression(target_ratio=2).group_size == 1
    assert HyperCompression(target_ratio=8).group_size == 2
    assert HyperCompression(bits=8).group_size == 2


@pytest.mark.parametrize("options, message", [
    ({"bits": 0}, "bits must be an integer in 1..16"),
    ({"bits": 17}, "bits must be an integer in 1..16"),
    ({"bits": 8, "group_size": 9}, "group_size must be an integer in 1..8"),
    ({"bits": 8, "group_size": "pairs"}, "group_size must be an integer in 1..8"),
    ({"bits": None}, "set bits"),
])
def test_bad_options_are_rejected(options, message):
    with pytest.raises(ConfigError, match=message):
        HyperCompression(**options)
