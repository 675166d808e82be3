"""The Python API (big2small.compress / save / load): what a user gets without Hydra."""

import copy

import pytest
import torch

import big2small
from big2small.codec import read_artifact
from big2small.errors import ArtifactError, ConfigError
from big2small.methods.registry import available
from big2small.models.cifar_resnet import CifarResNet
from big2small.models.small_cnn import SmallCNN
from tests.methods.roundtrip import RandomCalibration, digits_sized_cnn, outputs, skip_without_its_package

IMAGES = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(2))
FAST = {"big2small": {"target_ratio": 4.0, "fit": {"steps": 5},
                      "refinement": {"steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4}}, "none": {"target_ratio": None},
        "id_prune": {"target_ratio": 1.5, "calibration_images": 64, "batch_size": 32}}


@pytest.mark.parametrize("name", available())
def test_every_compressor_round_trips_through_a_file_into_a_fresh_model(name, tmp_path):
    skip_without_its_package(name)
    model = digits_sized_cnn()
    kwargs = FAST.get(name, {"target_ratio": 4.0})
    compressed = big2small.compress(model, name, data=RandomCalibration(), **kwargs)
    size = big2small.save(compressed, tmp_path / "a.safetensors")
    assert size == (tmp_path / "a.safetensors").stat().st_size
    fresh = SmallCNN(in_channels=1, num_classes=10, channels=(16, 32, 64))  # other weights, other BN statistics
    fresh_before = copy.deepcopy(fresh.state_dict())
    rebuilt = big2small.load(tmp_path / "a.safetensors", fresh)
    in_memory = big2small.load(tmp_path / "a.safetensors", model)
    torch.testing.assert_close(outputs(rebuilt, IMAGES), outputs(in_memory, IMAGES))
    assert all(torch.equal(fresh_before[k], v) for k, v in fresh.state_dict().items()), \
        "load must return a copy and leave its argument untouched"


def test_without_stored_state_the_rest_comes_from_the_given_model(tmp_path):
    model = digits_sized_cnn()
    compressed = big2small.compress(model, "quant", target_ratio=None, bits=8)
    small = big2small.save(compressed, tmp_path / "small.safetensors", store_uncompressed=False)
    whole = big2small.save(compressed, tmp_path / "whole.safetensors")
    assert small < whole
    rebuilt = big2small.load(tmp_path / "small.safetensors", model)
    assert torch.equal(rebuilt.state_dict()["features.1.running_mean"], model.state_dict()["features.1.running_mean"])


def test_an_artifact_for_another_architecture_is_refused(tmp_path):
    compressed = big2small.compress(SmallCNN(in_channels=1, num_classes=10, channels=(8, 16, 32)), "quant")
    big2small.save(compressed, tmp_path / "a.safetensors")
    with pytest.raises(ArtifactError, match="another architecture: features.0.weight|another architecture: .*shape"):
        big2small.load(tmp_path / "a.safetensors", SmallCNN(in_channels=1, num_classes=10, channels=(16, 16, 32)))


def test_every_replaced_name_existing_elsewhere_is_still_refused(tmp_path):
    # ResNet-32 has every parameter of ResNet-20 with the same shape: only the stored signature tells them apart.
    compressed = big2small.compress(CifarResNet(depth=20), "quant", target_ratio=None, bits=8)
    big2small.save(compressed, tmp_path / "a.safetensors", store_uncompressed=False)
    with pytest.raises(ArtifactError, match="another architecture: its model had"):
        big2small.load(tmp_path / "a.safetensors", CifarResNet(depth=32))


def test_an_altered_file_is_refused(tmp_path):
    big2small.save(big2small.compress(digits_sized_cnn(), "quant"), tmp_path / "a.safetensors")
    data = bytearray((tmp_path / "a.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / "a.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        big2small.load(tmp_path / "a.safetensors", digits_sized_cnn())


def test_bad_requests_are_config_errors():
    with pytest.raises(ConfigError, match="unknown compressor 'nope'"):
        big2small.compress(digits_sized_cnn(), "nope")
    with pytest.raises(ConfigError, match="uses data"):
        big2small.compress(digits_sized_cnn(), "id_prune", target_ratio=1.5)
    with pytest.raises(ConfigError, match="bits must be an integer"):
        big2small.compress(digits_sized_cnn(), "quant", target_ratio=None, bits=0)


def test_compress_leaves_the_model_unchanged():
    model = digits_sized_cnn()
    before = copy.deepcopy(model.state_dict())
    big2small.compress(model, "kmeans", target_ratio=6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_signed_artifact_loads_only_with_its_key_and_a_forgery_is_refused(tmp_path):
    model = digits_sized_cnn()
    compressed = big2small.compress(model, "quant", target_ratio=None, bits=8)
    big2small.save(compressed, tmp_path / "signed.safetensors", key="lab secret")
    expected = outputs(big2small.load(tmp_path / "signed.safetensors", model), IMAGES)
    torch.testing.assert_close(outputs(big2small.load(tmp_path / "signed.safetensors", model, key="lab secret"),
                                       IMAGES), expected)
    with pytest.raises(ArtifactError, match="not signed with the given key"):
        big2small.load(tmp_path / "signed.safetensors", model, key="another secret")
    # A forger edits the file and recomputes the checksum, but cannot make the HMAC without the key.
    forged = read_artifact(tmp_path / "signed.safetensors")
    forged.tensors["ranges"] = forged.tensors["ranges"] * 2
    big2small.save(forged, tmp_path / "forged.safetensors")
    assert outputs(big2small.load(tmp_path / "forged.safetensors", model), IMAGES).ne(expected).any()
    with pytest.raises(ArtifactError, match="not signed with the given key"):
        big2small.load(tmp_path / "forged.safetensors", model, key="lab secret")
