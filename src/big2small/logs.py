"""Keep the console to what a researcher needs: our summary and progress bars, not library chatter."""

import logging
import warnings

from lightning.pytorch.callbacks import RichProgressBar

DEFAULT_PHASE = "training"


class PhaseProgressBar(RichProgressBar):
    """Lightning's progress bar labelled with the phase of the run: the LightningModule's `progress_label`
    ("training the base model", "fitting INRs", ...), with epochs only where the loop counts them (fitting
    and refinement run a number of steps, shown as the bar's total)."""

    def _get_train_description(self, current_epoch: int) -> str:
        label = getattr(self.trainer.lightning_module, "progress_label", DEFAULT_PHASE)
        epochs = self.trainer.max_epochs
        return label if epochs is None or epochs < 1 else f"{label}, epoch {current_epoch + 1}/{epochs}"

    @property
    def test_description(self) -> str:
        return "evaluating"


def quiet_library_logs() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Tiny data sets trigger Lightning's "few workers / low batch count" hints on every run.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    # Frozen reference models (the teacher of input synthesis) stay in eval mode on purpose.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
