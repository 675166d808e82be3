"""Adversarial views of the refinement's inputs (adversarial.py) and the rule that gives them to coarse plans."""

import copy

import pytest
import torch

from big2small.errors import ConfigError
from big2small.methods.big2small.adversarial import adversarial_inputs
from big2small.methods.big2small.matching import batch_variances, input_sums, matching_loss, observing
from big2small.methods.big2small.settings import RefinementSettings
from tests.methods.big2small.test_refinement import _fit_log, cnn_with_known_statistics

LAYERS = ["features.0", "features.4", "features.7"]  # the tiny CNN's convolutions


def _student_and_weights():
    """The tiny CNN as teacher, and its coarsely rounded convolution weights as the student's."""
    teacher = cnn_with_known_statistics()
    student = copy.deepcopy(teacher)
    weights = {f"{name}.weight": (teacher.get_parameter(f"{name}.weight").detach() * 8).round() / 8 for name in LAYERS}
    return student, weights, teacher


def _loss(student, weights, teacher, inputs) -> float:
    """The summed matching loss of the student (with `weights`) against the teacher on `inputs`."""
    with torch.no_grad():
        with observing(teacher, LAYERS) as wanted_features:
            wanted = teacher(inputs)
        with observing(student, LAYERS) as features:
            output = torch.func.functional_call(student, weights, (inputs,), strict=False)
        outputs = [wanted, *wanted_features]
        variances = batch_variances(torch.stack([input_sums(o) for o in outputs]), [o[0].numel() for o in outputs])
        return float(matching_loss(output, wanted, features, wanted_features, variances, 1.0).sum())


def test_each_value_moves_by_the_step_towards_a_worse_match():
    student, weights, teacher = _student_and_weights()
    inputs = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    moved = adversarial_inputs(student, weights, teacher, LAYERS, inputs, 1.0, 0.05)
    change = (moved - inputs).abs()
    assert moved.shape == inputs.shape and not moved.requires_grad
    assert torch.allclose(change[change > 0], torch.tensor(0.05), atol=1e-6) and (change > 0).float().mean() > 0.9
    as_made, worse = _loss(student, weights, teacher, inputs), _loss(student, weights, teacher, moved)
    assert worse > 1.02 * as_made > 1.02 * _loss(student, weights, teacher, 2 * inputs - moved)


def test_step_0_leaves_the_inputs_and_neither_network_is_changed():
    student, weights, teacher = _student_and_weights()
    inputs = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    assert adversarial_inputs(student, weights, teacher, LAYERS, inputs, 1.0, 0.0) is inputs
    before = [p.clone() for p in [*student.parameters(), *teacher.parameters()]]
    trainable = [p.requires_grad for p in [*student.parameters(), *teacher.parameters()]]
    adversarial_inputs(student, weights, teacher, LAYERS, inputs, 1.0, 0.1)
    after = [*student.parameters(), *teacher.parameters()]
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, after, strict=True))
    assert [p.requires_grad for p in after] == trainable
    assert all(w.grad is None for w in weights.values())


def test_only_plans_under_adversarial_below_bits_take_the_step():
    settings = RefinementSettings(adversarial_below_bits=1.3, adversarial_step=0.05)
    assert settings.for_bits_per_weight(0.9).adversarial_step == pytest.approx(0.05)
    assert settings.for_bits_per_weight(1.9).adversarial_step == 0
    assert settings.for_bits_per_weight(3.6).adversarial_step == 0
    assert RefinementSettings(adversarial_below_bits=None).for_bits_per_weight(0.5).adversarial_step == 0


@pytest.mark.parametrize("values", [{"adversarial_step": -0.1}, {"adversarial_step": "big"},
                                    {"adversarial_step": float("nan")}, {"adversarial_below_bits": 0}])
def test_a_bad_adversarial_setting_is_a_config_error(values):
    with pytest.raises(ConfigError, match=next(iter(values))):
        RefinementSettings(**values)


@pytest.mark.parametrize(("adversarial_below_bits", "moved"), [(1000.0, True), (0.01, False), (None, False)])
def test_a_plan_of_few_bits_per_weight_sees_its_batches_moved(tmp_path, caplog, adversarial_below_bits, moved):
    log = _fit_log(tmp_path, caplog, steps=2, input_steps=2, light_above_bits=None,
                   adversarial_below_bits=adversarial_below_bits)
    assert ("(< refinement.adversarial_below_bits 1000): each batch is first moved by 0.05" in log) == moved
