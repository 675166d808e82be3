"""CIFAR ResNets: the published parameter counts, exact checkpoint keys, and the pretrained accuracy."""

from __future__ import annotations

import pytest
import torch

from big2small.checkpoints import load_checkpoint
from big2small.data.cifar10 import Cifar10DataModule
from big2small.errors import ConfigError
from big2small.models.cifar_resnet import CifarResNet


@pytest.mark.parametrize(("depth", "params"), [(20, 269_722), (32, 464_154)])
def test_parameter_counts(depth, params):
    assert sum(p.numel() for p in CifarResNet(depth).parameters()) == params


def test_shapes_through_the_option_a_shortcuts():
    model = CifarResNet(20).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert not any("shortcut" in name for name, _ in model.named_parameters())  # parameter-free shortcuts


def test_invalid_depth():
    with pytest.raises(ConfigError, match="depth must be one of"):
        CifarResNet(18)


def test_state_dict_round_trip_has_exact_keys(tmp_path):
    model = CifarResNet(20)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ok.th")
    load_checkpoint(CifarResNet(20), tmp_path / "ok.th")
    state = model.state_dict()
    state.pop("linear.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.th")
    with pytest.raises(ConfigError, match=r"missing keys \[linear.bias\].*unexpected keys \[extra.weight\]"):
        load_checkpoint(CifarResNet(20), tmp_path / "bad.th")


def test_pretrained_resnet20_accuracy_on_test_images(shared_dir):
    # The full 10,000-image figure (81.0 %) is printed by the pipeline run and benchmarks/eval_speed.py; here the
    # first 1,000 images check that the checkpoint loads (weights_only) and the normalisation is the right one.
    model = load_checkpoint(CifarResNet(20), shared_dir / "models/cifar10/resnet20-12fca82f.th").eval()
    data = Cifar10DataModule(root=str(shared_dir / "data/cifar10"))
    data.setup()
    images, labels = data.splits["test"].tensors
    with torch.inference_mode():
        accuracy = (model(images[:1000]).argmax(1) == labels[:1000]).float().mean().item()
    assert 0.72 < accuracy < 0.78  # 74.8 % measured on these 1,000 images
