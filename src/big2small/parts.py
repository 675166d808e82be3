"""What a run is made of: every configured object built, and so validated, before any work starts.

Also the Lightning Trainer factory every loop of a run uses, and the artifact signing key from the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from big2small.errors import ConfigError, first_line
from big2small.logs import PhaseProgressBar
from big2small.methods.base import Compressor
from big2small.tasks.base import Task
from big2small.tracking import Tracker
from big2small.values import as_integer

# A secret shared by those who write and read artifacts: set, every artifact is signed (HMAC) and every artifact
# read must carry a matching signature. An environment variable, so the key never lands in configs or W&B.
ARTIFACT_KEY_ENV = "BIG2SMALL_ARTIFACT_KEY"


def artifact_key() -> bytes | None:
    key = os.environ.get(ARTIFACT_KEY_ENV)
    return key.encode() if key else None


@dataclass
class RunParts:
    """Everything a run is made of, built (and so validated) before any work starts."""

    data: L.LightningDataModule
    task: Task
    model: nn.Module
    compressor: Compressor
    tracker: Tracker


def build_parts(cfg: DictConfig) -> RunParts:
    """Instantiate every configured object; any invalid value fails here, before training or fitting."""
    check_common(cfg)
    # Seed before building anything: the model's initial weights come from the global RNG.
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    data = _build(cfg.data)
    task = _build(cfg.task)
    model = _build(cfg.model.net)
    compressor = _build(cfg.compressor)
    # Synthetic inputs (Big2Small's refinement) must have the data's shape; a user's own data module may not say.
    data_shape = getattr(data, "input_shape", None)
    data_shape = data_shape() if callable(data_shape) else None
    output = None if data_shape is None else _output_on(model, data_shape, cfg.model.get("name", "model"))
    task.check_fits(data, cfg.data.get("name", "data"), output, data_shape)
    compressor.accept_input_shape(data_shape)
    tracker = _build(cfg.logger) if cfg.get("logger") else Tracker()
    checkpoint = cfg.model.get("checkpoint")
    if checkpoint and not Path(checkpoint).is_file():
        raise ConfigError(f"model.checkpoint: file not found: {checkpoint}")
    _check_trainer(cfg)
    return RunParts(data, task, model, compressor, tracker)


def _output_on(model: nn.Module, shape: list[int], name: str):
    """The model's output on one input of the data's `shape`, so that a model the data does not fit (images too small
    for its downsampling, another channel count) is a one-line error before any training, not a traceback in it."""
    training = model.training
    try:
        with torch.inference_mode():
            return model.eval()(torch.zeros(1, *shape))
    except Exception as error:  # noqa: BLE001 - models refuse inputs by RuntimeError, AssertionError, ValueError ...
        raise ConfigError(f"model: {name} cannot take the data's inputs of shape {list(shape)}: "
                          f"{first_line(error)}") from None
    finally:
        model.train(training)


def _check_trainer(cfg: DictConfig) -> None:
    """Build one Trainer from conf/trainer now, so that a device that is not there (trainer=gpu on a machine
    without one, trainer.devices=0) is a one-line error before any training, not after the artifact."""
    try:
        trainer_factory(cfg, Path("."), None)(enable_progress_bar=False)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - Lightning raises many types for device settings it cannot meet
        raise ConfigError(f"trainer: {first_line(error) or type(error).__name__}") from None


def trainer_factory(cfg: DictConfig, run_dir: Path, tracker: Tracker | None, single_device: bool = False):
    """Build Lightning Trainers from conf/trainer; evaluation always runs on a single device."""
    partial_trainer = instantiate(cfg.trainer)

    def make(logger_prefix: str | None = None, **overrides) -> L.Trainer:
        logger = tracker.lightning_logger(logger_prefix) if tracker is not None and logger_prefix else False
        settings = {"default_root_dir": str(run_dir), "logger": logger}
        if single_device:
            settings.update(devices=1, strategy="auto", num_nodes=1)
        settings.update(overrides)
        if settings.get("enable_progress_bar", partial_trainer.keywords.get("enable_progress_bar", True)):
            settings["callbacks"] = [*settings.get("callbacks", []), PhaseProgressBar()]
        return partial_trainer(**settings)

    return make


def _build(node: DictConfig):
    """hydra.utils.instantiate, re-raising our ConfigError as itself rather than wrapped in Hydra's exception."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        # The class refused its arguments (an unknown key added with +, a value of the wrong type): say which.
        reason = error.__cause__ if error.__cause__ is not None else error
        raise ConfigError(f"{node.get('_target_', 'config')}: {type(reason).__name__}: "
                          f"{first_line(reason)}") from None


def check_common(cfg: DictConfig) -> None:
    as_integer("seed", cfg.get("seed"), 0)
    if not isinstance(cfg.get("store_uncompressed", False), bool):
        raise ConfigError(f"store_uncompressed must be true or false (got {cfg.get('store_uncompressed')!r})")
    for group in ("task", "data", "model", "compressor", "trainer"):
        if cfg.get(group) is None:
            raise ConfigError(f"config group {group!r} is missing")
