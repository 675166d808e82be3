"""Screening an INR fit part-way (with `storage.layer_choice: lower_error`): INRs that cannot be kept stop.

After `fit.screen_at` of the steps, every INR's error is measured and divided by ERROR_FALL_BOUND, more than
any INR's error has been seen to fall in the remaining steps; the codec choice is made at those errors. The INRs it
does not keep are retired: the rest of the fit no longer computes them (they stay in the artifact's options with the
error they then have, so the choice after the fit still sees every INR as it really is). When it keeps none, the
fit stops there.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L

# At 20 % of ResNet-20's 1,000 steps every INR's error was within 1.074x of its error at the end (docs/decisions.md,
# the `fit.screen_at` entry); the bound leaves room for models and settings whose errors fall further.
ERROR_FALL_BOUND = 1.5


class ScreenINRs(L.Callback):
    """At step `at_step`, `kept(module.groups)` (the target keys whose INRs the choice keeps at the hoped errors,
    the INRs as this process holds them) decides: none kept stops the fit (agreed by every rank), else the
    module retires every other INR."""

    def __init__(self, at_step: int, kept: Callable[[list], set[str]]) -> None:
        self.at_step, self.kept = at_step, kept
        self.retired: set[str] = set()

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self.at_step:
            return
        kept = self.kept(list(module.groups))
        if trainer.strategy.reduce_boolean_decision(not kept, all=True):
            trainer.should_stop = True
            return
        self.retired = {t.key for group in module.groups for t in group.targets} - kept
        module.retire(self.retired)
