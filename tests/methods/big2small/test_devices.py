"""Where the fitting loops run: the trainer's device and precision decide; the result is always fp32 weights.

Tests marked `gpu` are skipped without CUDA (tests/conftest.py); the CPU ones run everywhere.
"""

import copy

import lightning as L
import pytest
import torch

from big2small.codec import Compressed
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.registry import rebuild
from tests.methods.big2small.test_big2small import trainer_factory
from tests.methods.big2small.test_refinement import _smooth_mlp

SETTINGS = dict(target_ratio=3, fit={"steps": 20, "inrs": "all"}, input_shape=[48],
                refinement={"enabled": True, "steps": 5, "num_inputs": 16, "input_steps": 3})


class _Placement(L.Callback):
    """Records, when each loop starts, the devices its parameters and buffers are on."""

    def __init__(self) -> None:
        self.devices: dict[str, set[str]] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        state = [*pl_module.parameters(), *pl_module.buffers()]
        self.devices[type(pl_module).__name__] = {t.device.type for t in state}


def _fit(tmp_path, callbacks=(), **trainer):
    """(mean relative weight error of the rebuilt layers, the rebuilt model)."""
    model = _smooth_mlp()
    make = trainer_factory(tmp_path, **trainer)

    def with_callbacks(**overrides):
        return make(**{**overrides, "callbacks": [*overrides.get("callbacks", []), *callbacks]})

    compressed = Big2SmallCompressor(**SETTINGS).fit(copy.deepcopy(model), trainer_factory=with_callbacks)
    rebuilt = rebuild(Compressed.from_bytes(compressed.to_bytes()), copy.deepcopy(model))
    errors = [float((rebuilt.get_parameter(n) - model.get_parameter(n)).norm() / model.get_parameter(n).norm())
              for n in compressed.meta["replaced"]]
    return sum(errors) / len(errors), rebuilt


def test_bf16_mixed_fitting_gives_fp32_weights_close_to_an_fp32_fit(tmp_path):
    fp32_error, _ = _fit(tmp_path / "fp32")
    bf16_error, rebuilt = _fit(tmp_path / "bf16", precision="bf16-mixed")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in rebuilt.parameters())
    assert bf16_error < fp32_error + 0.05, (bf16_error, fp32_error)


@pytest.mark.gpu
def test_every_loop_runs_on_the_gpu_with_all_its_state_there(tmp_path):
    placement = _Placement()
    gpu_error, rebuilt = _fit(tmp_path / "gpu", callbacks=[placement], accelerator="gpu", devices=1)
    cpu_error, _ = _fit(tmp_path / "cpu")
    assert placement.devices == {"INRFitModule": {"cuda"}, "StatisticsMatching": {"cuda"}, "RefineModule": {"cuda"}}
    assert all(p.device.type == "cpu" for p in rebuilt.parameters())
    assert abs(gpu_error - cpu_error) < 0.05, (gpu_error, cpu_error)


@pytest.mark.gpu
def test_bf16_mixed_on_the_gpu_gives_fp32_weights_close_to_fp32(tmp_path):
    fp32_error, _ = _fit(tmp_path / "fp32", accelerator="gpu", devices=1)
    bf16_error, rebuilt = _fit(tmp_path / "bf16", accelerator="gpu", devices=1, precision="bf16-mixed")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in rebuilt.parameters())
    assert bf16_error < fp32_error + 0.05, (bf16_error, fp32_error)


def test_input_synthesis_weight_fitting_and_refinement_all_run_under_the_trainer(tmp_path):
    placement = _Placement()
    _fit(tmp_path, callbacks=[placement])
    assert placement.devices == {"INRFitModule": {"cpu"}, "StatisticsMatching": {"cpu"}, "RefineModule": {"cpu"}}
