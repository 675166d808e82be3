"""Checkpoints of a Big2Small fit, for `fit.resume=true` only: one file per fit, replaced whole, never trusted
blindly.

A fit that may be resumed keeps `last.ckpt` in a folder named by the fit's key (weights + settings), written to
a temporary name and renamed, so a kill leaves the previous checkpoint or the new one, never half of one, and
re-runs overwrite it instead of piling up `last-v1.ckpt`, `last-v2.ckpt`. A checkpoint that cannot be read is
named in a warning, removed, and the fit starts again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from big2small.errors import first_line

log = logging.getLogger(__name__)
LAST = "last.ckpt"


class LastCheckpoint(ModelCheckpoint):
    """Lightning's last-checkpoint saving, atomic and unversioned."""

    def __init__(self, folder: Path, every_steps: int) -> None:
        super().__init__(dirpath=folder, save_last=True, save_top_k=0, every_n_train_steps=every_steps,
                         enable_version_counter=False)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        partial = f"{filepath}.tmp"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath


def resumable_checkpoint(folder: Path) -> str | None:
    """The path of the fit's readable checkpoint in `folder`, or None (a damaged one is reported and removed)."""
    last = Path(folder) / LAST
    if not last.is_file():
        log.info("big2small: fit.resume=true but no checkpoint at %s; fitting from the start", last)
        return None
    try:
        # The user asked to resume from this folder, which only our own fits write to.
        torch.load(last, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is treated the same way
        log.warning("big2small: the fit checkpoint %s is damaged (%s: %s); removed, fitting from the start",
                    last, type(error).__name__, first_line(error))
        last.unlink(missing_ok=True)
        return None
    log.info("big2small: resuming the fit from %s", last)
    return str(last)
