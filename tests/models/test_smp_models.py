"""smp segmentation and torchvision classification builders: output resolution and channels, and clear errors for
bad names."""

from __future__ import annotations

import pytest
import torch

from big2small.errors import ConfigError
from big2small.models.smp_models import segmentation_model
from big2small.models.torchvision_models import torchvision_classifier


@pytest.mark.parametrize(("architecture", "settings"), [
    ("Unet", {"encoder_depth": 2, "decoder_channels": [16, 8]}),
    ("FPN", {"encoder_depth": 3, "upsampling": 1, "decoder_pyramid_channels": 16,
             "decoder_segmentation_channels": 32}),
    ("DeepLabV3Plus", {"encoder_depth": 4, "decoder_channels": 16, "decoder_atrous_rates": [2, 4, 6]}),
])
def test_architectures_keep_resolution(architecture, settings):
    model = segmentation_model(architecture, "tu-resnet18", None, in_channels=1, num_classes=3, **settings).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)


def test_unknown_names_are_config_errors():
    with pytest.raises(ConfigError, match="architecture must be one of"):
        segmentation_model("SegNet")
    with pytest.raises(ConfigError, match="unknown smp encoder"):
        segmentation_model("Unet", "resnet_typo")


def test_torchvision_classifier_by_name_without_weights():
    model = torchvision_classifier("resnet18", num_classes=10).eval()
    assert model.fc.out_features == 10
    with pytest.raises(ConfigError, match="unknown torchvision classification model"):
        torchvision_classifier("resnet_typo")


@pytest.mark.parametrize(("name", "in_channels", "stem"), [("resnet18", 1, "conv1"),
                                                            ("mobilenet_v3_small", 4, "features.0.0")])
def test_torchvision_classifier_takes_the_data_channels_at_its_stem(name, in_channels, stem):
    torch.manual_seed(0)
    rgb = torchvision_classifier(name, num_classes=10)
    torch.manual_seed(0)
    model = torchvision_classifier(name, num_classes=10, in_channels=in_channels).eval()
    assert model.get_submodule(stem).in_channels == in_channels
    # the stem starts from the kernels the builder drew, channel i from channel i mod 3
    drawn = rgb.get_submodule(stem).weight
    assert torch.equal(model.get_submodule(stem).weight, drawn[:, [i % 3 for i in range(in_channels)]])
    with torch.no_grad():
        assert model(torch.randn(2, in_channels, 64, 64)).shape == (2, 10)
    with pytest.raises(ConfigError, match="in_channels must be >= 1"):
        torchvision_classifier(name, in_channels=0)


def test_torchvision_classifiers_with_side_heads_train_on_one_output():
    model = torchvision_classifier("googlenet", num_classes=10).train()  # aux_logits off: one tensor in training
    assert isinstance(model(torch.randn(2, 3, 64, 64)), torch.Tensor)
    with pytest.raises(ConfigError, match="aux_logits returns several outputs"):
        torchvision_classifier("googlenet", aux_logits=True)
