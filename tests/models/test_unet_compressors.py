"""Every registered compressor must compress a U-Net (encoder, decoder convs, BN) and rebuild it from its artifact."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from big2small.codec import write_artifact
from big2small.data.shapes import ShapesDataModule
from big2small.methods.registry import available, compressor_class
from big2small.models.smp_models import segmentation_model
from big2small.pipeline import rebuild_from_artifact
from tests.methods.roundtrip import skip_without_its_package

# Modest settings per registered name, so the test stays fast. A newly registered compressor must add an entry:
# the test fails for a name without one rather than skipping it silently.
SETTINGS: dict[str, dict] = {
    "none": {},
    "quant": {"bits": 8},
    "kmeans": {"bits": 4, "iterations": 5},
    "magnitude": {"sparsity": 0.5},
    "lq_prune": {},
    "svd": {"rank_fraction": 0.5},
    "id_prune": {"keep_fraction": 0.5, "calibration_images": 8, "batch_size": 8},
    "hyper": {"bits": 8},
    "nncodec": {"qp": -32},
    "big2small": {"target_ratio": 4.0, "fit": {"steps": 5}, "input_shape": [3, 32, 32],
                  "refinement": {"steps": 3, "input_steps": 3, "num_inputs": 8, "batch_size": 4}},
}
# Compressors that keep every weight to within 8-bit rounding: their rebuilt U-Net must compute nearly the same.
NEAR_LOSSLESS = {"none", "quant"}


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return segmentation_model("Unet", "tu-resnet18", None, in_channels=3, num_classes=4, encoder_depth=2,
                              decoder_channels=[16, 8]).eval()


def make_trainer(**overrides) -> L.Trainer:
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)
    return L.Trainer(**{**settings, **overrides})


def test_every_registered_compressor_has_settings():
    missing = sorted(set(available()) - set(SETTINGS))
    assert not missing, f"add U-Net test settings for newly registered compressors: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compressor_rebuilds_a_unet(name, tmp_path):
    if name not in available():
        pytest.skip(f"compressor {name!r} is not registered in this checkout")
    skip_without_its_package(name)
    model = tiny_unet()
    data = ShapesDataModule(image_size=32, train_size=8, val_size=0, test_size=4)
    compressor = compressor_class(name)(**SETTINGS[name])

    compressed = compressor.fit(copy.deepcopy(model), data=data if compressor.uses_data else None,
                                trainer_factory=make_trainer)
    assert any(param.startswith("decoder.") for param in compressed.meta["replaced"]), "decoder convs not covered"
    path = tmp_path / "unet.safetensors"
    write_artifact(compressed, path)
    rebuilt = rebuild_from_artifact(path, model)

    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected, got = model(images), rebuilt(images)
    assert got.shape == expected.shape
    assert torch.isfinite(got).all()
    if name in NEAR_LOSSLESS:
        assert torch.allclose(got, expected, rtol=0.05, atol=0.05 * float(expected.abs().max()))
