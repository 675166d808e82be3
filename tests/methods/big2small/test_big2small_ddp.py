"""A fit on 2 CPU processes (gloo; forked, or spawned as trainer=ddp does) writes the same artifact as a 1-process fit.

Why exact equality can hold: every INR's initial parameters and coordinate draws come from its own seed, the
loss is a sum over INRs, and each rank scales its share's loss by the world size so that DDP's gradient average
returns every INR exactly its own gradient (x2 and /2 are exact in floating point; the other rank adds zeros).
"""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from big2small.methods.big2small.compressor import Big2SmallCompressor
from tests.conftest import tiny_cnn


def _factory(devices: int, root, start: str = "spawn"):
    """Trainers on `devices` CPU processes. start="fork" forks them (no interpreter start-up, nothing pickled) for
    the tests of what the ranks compute; "spawn" is what trainer=ddp runs, where everything must pickle."""
    def make(**overrides):
        settings = dict(accelerator="cpu", devices=devices, strategy=f"ddp_{start}" if devices > 1 else "auto",
                        logger=False, enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                        default_root_dir=str(root))
        settings.update(overrides)
        return L.Trainer(**settings)
    return make


@pytest.mark.slow
def test_two_process_fit_equals_one_process_fit(tmp_path):
    model = tiny_cnn()
    settings = dict(target_ratio=3.0, inr={"min_width": 2}, fit={"steps": 15, "lr": 3e-3}, seed=3,
                    refinement={"enabled": False}, storage={"layer_choice": "inr"})
    single = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=_factory(1, tmp_path / "a"))
    double = Big2SmallCompressor(**settings).fit(copy.deepcopy(model),
                                                 trainer_factory=_factory(2, tmp_path / "b", start="fork"))
    assert single.meta == double.meta
    assert single.tensors.keys() == double.tensors.keys()
    for name in single.tensors:
        assert torch.equal(single.tensors[name], double.tensors[name]), name
    # the INRs really were fitted (not left at their initial values)
    untrained = Big2SmallCompressor(**{**settings, "fit": {"steps": 1, "lr": 1e-12}}).fit(
        copy.deepcopy(model), trainer_factory=_factory(1, tmp_path / "c"))
    assert not torch.equal(untrained.tensors["inr_fp16"], single.tensors["inr_fp16"])


@pytest.mark.slow
def test_two_process_refinement_equals_one_process_refinement(tmp_path):
    # Refinement draws the same synthetic batches on every rank, so DDP averages two equal gradients: exact again.
    model = tiny_cnn()
    settings = dict(target_ratio=3.0, inr={"min_width": 2}, fit={"steps": 5, "lr": 3e-3}, seed=3,
                    input_shape=[1, 8, 8], storage={"layer_choice": "inr"},
                    refinement={"enabled": True, "num_inputs": 8, "input_steps": 3, "steps": 5, "batch_size": 4,
                                "lr": 1e-3})
    single = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=_factory(1, tmp_path / "a"))
    double = Big2SmallCompressor(**settings).fit(copy.deepcopy(model),
                                                 trainer_factory=_factory(2, tmp_path / "b", start="fork"))
    for name in single.tensors:
        assert torch.equal(single.tensors[name], double.tensors[name]), name
    unrefined = Big2SmallCompressor(**{**settings, "refinement": {"enabled": False}}).fit(
        copy.deepcopy(model), trainer_factory=_factory(1, tmp_path / "c"))
    assert not torch.equal(unrefined.tensors["inr_fp16"], single.tensors["inr_fp16"])


@pytest.mark.slow
def test_the_default_codec_choice_screening_and_refinement_switches_run_on_two_processes(tmp_path):
    # Everything handed to the spawned processes must pickle: the screening's test, the choice's error measure,
    # the views' generator. The ranks see equal batches, so two processes give the one-process artifact.
    model = tiny_cnn()
    settings = dict(target_ratio=3.0, fit={"steps": 10, "lr": 3e-3}, seed=3, input_shape=[1, 8, 8],
                    refinement={"enabled": True, "num_inputs": 8, "input_steps": 3, "steps": 4, "batch_size": 4,
                                "views": "flip_shift", "hard_weight": 1.0, "scale_lr": 1e-2})
    single = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=_factory(1, tmp_path / "a"))
    double = Big2SmallCompressor(**settings).fit(copy.deepcopy(model), trainer_factory=_factory(2, tmp_path / "b"))
    assert single.meta == double.meta
    for name in single.tensors:
        assert torch.equal(single.tensors[name], double.tensors[name]), name
