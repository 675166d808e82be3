"""Output sensitivity: the diagonal of sum_x J_x^T J_x, estimated with random output directions."""

import torch
from torch import nn

from big2small.methods.big2small.sensitivity import output_sensitivity


def test_a_linear_layer_sensitivity_is_its_inputs_energy_per_column():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 512, bias=False))
    scales = torch.linspace(0.1, 2.0, 16)
    inputs = torch.randn(64, 16) * scales
    estimate = output_sensitivity(model, inputs, ["0.weight"], batch_size=16, seed=0)["0.weight"]
    assert estimate.shape == (512, 16)
    # d(v^T W x)/dW = v x^T: per column j the expectation is the inputs' energy in j, per batch of 16
    expected = (inputs ** 2).sum(dim=0) / 4
    per_column = estimate.mean(dim=0)
    assert torch.allclose(per_column, expected, rtol=0.2)
    assert model[0].weight.requires_grad and model[0].weight.grad is None  # the model is left as it was
