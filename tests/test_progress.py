"""Progress bars name the phase of a run and count what the loop counts (steps for fitting, epochs for training)."""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from big2small.logs import PhaseProgressBar
from big2small.methods.big2small.fitting import INRFitModule
from big2small.tasks.classification import ClassificationModule


class _Probe(L.LightningModule):
    def __init__(self, label: str, items: int) -> None:
        super().__init__()
        self.progress_label, self.items = label, items
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list = []

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.zeros(self.items, 1)), batch_size=1)

    def training_step(self, batch, batch_idx):
        bar = self.trainer.progress_bar_callback
        self.seen.append((bar._get_train_description(self.current_epoch), bar.total_train_batches))
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _fit(module, **limits):
    bar = PhaseProgressBar()
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                        callbacks=[bar], **limits)
    assert trainer.progress_bar_callback is bar
    trainer.fit(module)
    return module.seen


def test_a_step_counted_loop_shows_its_phase_and_its_step_total():
    seen = _fit(_Probe(INRFitModule.progress_label, items=5), max_steps=5, max_epochs=-1)
    assert seen[0] == ("fitting INRs", 5)


def test_an_epoch_counted_loop_shows_its_phase_and_epoch():
    seen = _fit(_Probe(ClassificationModule.progress_label, items=2), max_epochs=2)
    assert [description for description, _ in seen] == ["training the base model, epoch 1/2"] * 2 + \
        ["training the base model, epoch 2/2"] * 2
    assert PhaseProgressBar().test_description == "evaluating"


class _SeenDescriptions(L.Callback):
    def __init__(self) -> None:
        self.seen: list = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        bar = trainer.progress_bar_callback
        self.seen.append((bar._get_train_description(trainer.current_epoch), bar.total_train_batches))


def test_synthesising_refinement_inputs_shows_its_phase_and_step_total(tmp_path):
    from big2small.methods.big2small.settings import RefinementSettings
    from big2small.methods.big2small.synthesis import synthetic_inputs
    from tests.conftest import tiny_cnn

    probe = _SeenDescriptions()

    def trainer_factory(**overrides):
        return L.Trainer(**{"accelerator": "cpu", "logger": False, "enable_model_summary": False,
                            "default_root_dir": str(tmp_path), **overrides,
                            "callbacks": [PhaseProgressBar(), probe]})

    images = synthetic_inputs(tiny_cnn().eval(), [1, 8, 8], RefinementSettings(num_inputs=4, input_steps=3), seed=0,
                              trainer_factory=trainer_factory)
    assert images.shape == (4, 1, 8, 8)
    assert probe.seen[0] == ("synthesising inputs", 3)  # the bar's total is set when the loop starts
    assert [description for description, _ in probe.seen] == ["synthesising inputs"] * 3
