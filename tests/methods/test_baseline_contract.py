"""What every baseline compressor promises: artifact round trip, target_ratio within 5 %, rebuilt = in-memory."""

import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.registry import available, compressor_class
from tests.methods.roundtrip import (
    RandomCalibration,
    digits_sized_cnn,
    in_memory_model,
    outputs,
    round_trip,
    skip_without_its_package,
)

# Every registered method with a target ratio; big2small has its own tests (it needs a Lightning trainer).
BASELINES = [name for name in available() if name not in ("none", "big2small")]
USES_DATA = {"id_prune"}
IMAGES = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("target", [2.0, 4.0, 8.0])
@pytest.mark.parametrize("name", BASELINES)
def test_target_ratio_is_met_within_5_percent_and_rebuild_matches_memory(name, target, tmp_path):
    skip_without_its_package(name)
    model = digits_sized_cnn()
    compressor = compressor_class(name)(target_ratio=target)
    compressed, rebuilt, ratio = round_trip(compressor, model, tmp_path, data=RandomCalibration())
    assert abs(ratio / target - 1) <= 0.05, f"{name}: measured {ratio:.3f}x for target {target}x"
    torch.testing.assert_close(outputs(rebuilt, IMAGES), outputs(in_memory_model(compressed, model), IMAGES))
    assert torch.isfinite(outputs(rebuilt, IMAGES)).all()


@pytest.mark.parametrize("name", BASELINES)
def test_target_ratio_of_one_or_less_is_rejected(name):
    with pytest.raises(ConfigError, match="target_ratio must be > 1"):
        compressor_class(name)(target_ratio=1.0)


@pytest.mark.parametrize("name", BASELINES)
def test_only_data_using_methods_declare_data_use(name):
    assert compressor_class(name).uses_data is (name in USES_DATA)
