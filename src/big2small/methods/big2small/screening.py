"""Stopping an INR fit early once no INR can be kept (with `storage.layer_choice: lower_error`).

After `fit.screen_at` of the steps, every INR's error is measured and divided by ERROR_FALL_BOUND, more than
any INR's error has been seen to fall in the remaining steps; if the codec choice would keep no INR even at
those errors, it keeps none at the end either (its choice only gets harder for the INRs as their errors grow),
and the remaining steps are skipped.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L

# At 20 % of ResNet-20's 1,000 steps every INR's error was within 1.074x of its error at the end (docs/decisions.md,
# the `fit.screen_at` entry); the bound leaves room for models and settings whose errors fall further.
ERROR_FALL_BOUND = 1.5


class StopWhenNoINRWins(L.Callback):
    """At step `at_step`, stops the fit unless `any_can_win(module.groups)`, the INRs as this process holds them
    (agreed by every rank)."""

    def __init__(self, at_step: int, any_can_win: Callable[[list], bool]) -> None:
        self.at_step, self.any_can_win = at_step, any_can_win

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self.at_step:
            return
        if trainer.strategy.reduce_boolean_decision(not self.any_can_win(list(module.groups)), all=True):
            trainer.should_stop = True
