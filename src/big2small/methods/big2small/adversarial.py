"""Adversarial views of the refinement's inputs: each batch moved to where the compressed network matches the
uncompressed one worst.

One signed-gradient ascent step (as FGSM makes adversarial examples): every input value moves by +-`step` in the
direction that raises the refinement's own matching loss (matching.matching_loss of the student, its weights as
they stand and held fixed, against the teacher). The refinement then matches the two networks on the moved inputs,
so its few hundred synthetic inputs teach it where the student is worst, near them, rather than where it already
fits them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from big2small.methods.big2small.matching import batch_variances, input_sums, matching_loss, observing


def adversarial_inputs(student: nn.Module, weights: dict[str, torch.Tensor], teacher: nn.Module,
                       observed: list[str], inputs: torch.Tensor, feature_weight: float, step: float,
                       bf16: bool = False) -> torch.Tensor:
    """`inputs` moved by `step` x the sign of the gradient of the matching loss of `student` (with `weights` in place
    of its own, held fixed) against `teacher` (logits and `observed` outputs, the latter weighted `feature_weight`);
    step 0 returns `inputs`. bf16: both networks' passes under bf16 autocast. Neither network is changed."""
    if step == 0:
        return inputs
    moved = inputs.detach().requires_grad_(True)
    fixed = {name: weight.detach() for name, weight in weights.items()}
    with torch.enable_grad(), torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
        with observing(teacher, observed) as wanted_features:
            wanted = teacher(moved)
        with observing(student, observed) as features:
            output = functional_call(student, fixed, (moved,), strict=False)
        outputs = [wanted, *wanted_features]
        sums = torch.stack([input_sums(o.detach().float()) for o in outputs])
        variances = batch_variances(sums, [o[0].numel() for o in outputs])
        loss = matching_loss(output.float(), wanted.float(), [f.float() for f in features],
                             [f.float() for f in wanted_features], variances, feature_weight).sum()
        gradient, = torch.autograd.grad(loss, moved)
    return (inputs + step * gradient.sign()).detach()
