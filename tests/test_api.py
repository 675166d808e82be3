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
from big2small.models.smp_models import segmentation_model
from big2small.models.torchvision_models import torchvision_classifier
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
    big2small.save(compressed, tmp_path / "whole.safetensors")  # names its architecture: the message says which
    with pytest.raises(ArtifactError, match=r"another architecture: .*; it is for cifar_resnet\(depth=20, "):
        big2small.load(tmp_path / "whole.safetensors", CifarResNet(depth=32))


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


@pytest.mark.parametrize("build", [
    lambda: CifarResNet(depth=20),
    lambda: SmallCNN(in_channels=1, num_classes=10, channels=(8, 16)),
    lambda: torchvision_classifier("squeezenet1_1", num_classes=10),
    lambda: torchvision_classifier("squeezenet1_1", num_classes=10, in_channels=1),
    lambda: torchvision_classifier("mnasnet0_5", num_classes=10),  # its loader needs the state's version
    lambda: segmentation_model("Unet", "tu-resnet18", None, in_channels=1, num_classes=1, encoder_depth=2,
                               decoder_channels=[16, 8]),
], ids=["cifar_resnet", "small_cnn", "torchvision", "torchvision_grey", "mnasnet", "smp"])
def test_an_artifact_of_a_known_architecture_loads_without_a_model(build, tmp_path):
    model = build().eval()
    big2small.save(big2small.compress(model, "quant", target_ratio=None, bits=8), tmp_path / "a.safetensors")
    alone = big2small.load(tmp_path / "a.safetensors")
    assert type(alone) is type(model)
    images = torch.randn(2, _in_channels(model), 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(outputs(alone, images), outputs(big2small.load(tmp_path / "a.safetensors", model), images))


def _in_channels(model: torch.nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).in_channels


def test_without_a_model_an_artifact_that_names_no_known_architecture_says_to_pass_one(tmp_path):
    own = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    big2small.save(big2small.compress(own, "quant", target_ratio=None, bits=8), tmp_path / "own.safetensors")
    with pytest.raises(ArtifactError, match=r"which architecture it is for .*pass the model: big2small.load\(path, model\)"):
        big2small.load(tmp_path / "own.safetensors")
    assert isinstance(big2small.load(tmp_path / "own.safetensors", own), torch.nn.Sequential)
    compressed = big2small.compress(digits_sized_cnn(), "quant", target_ratio=None, bits=8)
    big2small.save(compressed, tmp_path / "part.safetensors", store_uncompressed=False)
    with pytest.raises(ArtifactError, match="does not store the rest of the model"):
        big2small.load(tmp_path / "part.safetensors")
    # A recipe can only name big2small's own builders: what a file says never chooses the code that runs.
    compressed.architecture = {"builder": "os.system", "arguments": {"command": "true"}}
    big2small.save(compressed, tmp_path / "forged.safetensors")
    with pytest.raises(ArtifactError, match="names no model builder of big2small"):
        big2small.load(tmp_path / "forged.safetensors")


def test_the_stored_rest_of_the_model_is_not_counted_as_compressed_bytes(tmp_path):
    compressed = big2small.compress(CifarResNet(depth=20), "quant", target_ratio=None, bits=8)
    whole = big2small.save(compressed, tmp_path / "whole.safetensors")
    part = big2small.save(compressed, tmp_path / "part.safetensors", store_uncompressed=False)
    assert compressed.compressed_bytes() == part < whole
    assert read_artifact(tmp_path / "whole.safetensors").architecture == {
        "builder": "cifar_resnet", "arguments": {"depth": 20, "num_classes": 10, "in_channels": 3}}
