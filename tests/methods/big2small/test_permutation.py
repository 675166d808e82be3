import torch
from torch import nn
from torch.nn import functional as F

from big2small.methods.big2small.permutation import channel_spaces, check_same_function, permute_model
from big2small.models.cifar_resnet import CifarResNet
from tests.conftest import tiny_cnn


class _Residual(nn.Module):
    """stem -> two residual blocks on one 8-channel stream -> head."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.a1, self.a2 = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.b1, self.b2 = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(6, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = F.relu(x + self.a2(F.relu(self.a1(x))))
        x = F.relu(x + self.b2(F.relu(self.b1(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def _randomise_bn(model):
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def test_sequential_cnn_permuted_computes_the_same_function():
    model = _randomise_bn(tiny_cnn())
    permuted, orders = permute_model(model)
    assert len(orders) == 3  # the three conv outputs; the head's outputs (the network's output) stay put
    assert any(not torch.equal(order, torch.arange(order.numel())) for _, order in orders)
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(model(x), permuted(x), atol=1e-5)
    assert check_same_function(model, permuted, x, 1e-4) < 1e-5


def test_residual_stream_shares_one_permutation():
    model = _randomise_bn(_Residual())
    spaces = channel_spaces(model)
    stream = next(s for s in spaces if "stem" in s.producers)
    assert sorted(stream.producers) == ["a2", "b2", "stem"]
    assert sorted(stream.consumers) == ["a1", "b1", "head"]
    assert stream.norms == ["bn"]
    permuted, _ = permute_model(model)
    x = torch.randn(3, 3, 8, 8)
    assert torch.allclose(model(x), permuted(x), atol=1e-5)


def test_cifar_resnet_keeps_its_padded_shortcut_streams_and_permutes_block_interiors():
    model = _randomise_bn(CifarResNet(depth=20))
    spaces = channel_spaces(model)
    assert len(spaces) == 9 and all(len(s.producers) == 1 and s.producers[0].endswith("conv1") for s in spaces)
    permuted, _ = permute_model(model)
    x = torch.randn(2, 3, 32, 32)
    assert check_same_function(model, permuted, x, 1e-4) < 1e-4
