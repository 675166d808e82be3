"""Helpers for the baseline compressor tests: compress, write the artifact, rebuild it as the pipeline does."""

from __future__ import annotations

import copy

import pytest
import torch

from big2small.codec import write_artifact
from big2small.methods.registry import rebuild
from big2small.models.small_cnn import SmallCNN
from big2small.pipeline import rebuild_from_artifact

# Compressors that need an optional package (an extra of pyproject.toml): name -> the package.
OPTIONAL_PACKAGES = {"nncodec": "nncodec"}


def skip_without_its_package(name: str) -> None:
    """Skip the calling test when compressor `name` needs an optional package that is not installed."""
    if name in OPTIONAL_PACKAGES:
        pytest.importorskip(OPTIONAL_PACKAGES[name], reason=f"{name} needs the optional package "
                                                            f"{OPTIONAL_PACKAGES[name]} (pip install .[nnc])")


class RandomCalibration:
    """Stands in for a data module: `calibration_images(n)` of 8x8 single-channel images."""

    def __init__(self, seed: int = 0) -> None:
        self.images = torch.randn(96, 1, 8, 8, generator=torch.Generator().manual_seed(seed))

    def calibration_images(self, count: int) -> torch.Tensor:
        return self.images[:count]


def digits_sized_cnn(seed: int = 0) -> torch.nn.Module:
    """The default digits model's architecture (about 24k weights), randomly initialised."""
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=10, channels=(16, 32, 64)).eval()
    # Non-trivial BN statistics, so that slicing and folding of BN entries is exercised.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


def round_trip(compressor, model, tmp_path, data=None):
    """-> (in-memory Compressed, model rebuilt from the artifact file, measured ratio)."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compressed = compressor.fit(model, data=data)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before), \
        "fit must not modify the model passed in"
    path = tmp_path / "artifact.safetensors"
    size = write_artifact(compressed, path)
    assert size == path.stat().st_size
    rebuilt = rebuild_from_artifact(path, model)
    original = 4 * sum(model.get_parameter(n).numel() for n in compressed.meta["replaced"])
    return compressed, rebuilt, original / size


def outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def in_memory_model(compressed, model):
    return rebuild(compressed, copy.deepcopy(model)).eval()
