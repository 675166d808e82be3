import pytest
import torch
from torch import nn

from big2small.errors import ConfigError
from big2small.tasks.weight_penalties import SmoothnessPenalty


def test_nuclear_norm_is_the_sum_of_singular_values():
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    assert float(SmoothnessPenalty("nuclear", strength=0.5)(model).detach()) == pytest.approx(3.5)


def test_differences_along_both_channel_axes():
    model = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]]).reshape(2, 3, 1, 1))
    # first: along C_out (1,0,-2) -> 5, along C_in (1,2),(0,0) -> 5; second: along C_in 3-2+0 -> 1, C_out too short
    assert float(SmoothnessPenalty("first_difference", strength=1.0)(model).detach()) == pytest.approx(10.0)
    assert float(SmoothnessPenalty("second_difference", strength=1.0)(model).detach()) == pytest.approx(1.0)


def test_penalty_has_gradients_and_settings_for_the_cache_key():
    model = nn.Sequential(nn.Conv2d(2, 4, 3))
    penalty = SmoothnessPenalty("nuclear", 1e-3)
    penalty(model).backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    assert penalty.settings() == {"kind": "nuclear", "strength": 1e-3, "layer_types": ["conv", "linear"]}


def test_bad_options_are_rejected():
    with pytest.raises(ConfigError, match="kind must be one of"):
        SmoothnessPenalty("tv")
    with pytest.raises(ConfigError, match="strength must be a finite number >= 0"):
        SmoothnessPenalty("nuclear", -1.0)


def test_smooth_task_config_builds_the_penalty():
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    task = instantiate(compose_config(["task=classification_smooth"]).task, _convert_="all")
    assert isinstance(task.weight_penalty, SmoothnessPenalty)
    assert task.training_settings()["weight_penalty"]["kind"] == "nuclear"
