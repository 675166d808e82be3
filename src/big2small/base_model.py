"""The model to compress: from a checkpoint, or trained by the task and cached for the next run."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning as L
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save
from torch import nn

from big2small.checkpoints import load_checkpoint, load_state
from big2small.files import write_atomically
from big2small.tasks.base import Task, TrainerFactory

log = logging.getLogger(__name__)


def base_model_cache_key(net_config: dict, data_config: dict, seed: int, task: Task) -> str:
    """A digest of everything that determines the trained weights."""
    identity = {"net": net_config, "data": data_config, "seed": seed, "training": task.training_settings()}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def obtain_base_model(
    model: nn.Module,
    *,
    checkpoint: str | None,
    trusted_pickle: bool,
    task: Task,
    data: L.LightningDataModule,
    make_trainer: TrainerFactory,
    cache_dir: Path,
    cache_key: str,
    seed: int,
) -> tuple[nn.Module, str]:
    """Return (model with trained weights, where they came from)."""
    if checkpoint:
        return load_checkpoint(model, checkpoint, trusted_pickle=trusted_pickle), f"checkpoint:{checkpoint}"
    cached = cache_dir / f"{cache_key}.safetensors"
    if cached.is_file():
        load_state(model, load_file(str(cached)))
        log.info("base model loaded from cache %s", cached)
        return model, f"cache:{cached}"
    L.seed_everything(seed, workers=True, verbose=False)
    task.train(model, data, make_trainer)
    model.eval()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomically(cached, safetensors_save(state, metadata={"cache_key": cache_key}), "the base-model cache")
    return model, f"trained:{cached}"
