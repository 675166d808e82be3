"""`src/evaluate.py`: an existing artifact verified, rebuilt and evaluated, recorded like a train run.

Nothing is fitted. The base model's weights (model.checkpoint) are needed when the artifact does not store the
parameters its compressor left alone, and give the base model's metric beside the rebuilt one when given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from big2small.checkpoints import load_checkpoint
from big2small.codec import Compressed, read_artifact
from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.errors import ConfigError
from big2small.files import writable_dir, write_state_dict
from big2small.parts import RunParts, artifact_key, build_parts, check_common, trainer_factory
from big2small.rebuilding import layer_table, rebuild_model
from big2small.tracking import write_metrics_json

log = logging.getLogger(__name__)


def evaluate_artifact(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """`src/evaluate.py`: verify and rebuild an existing artifact, evaluate it (and the base model when a
    checkpoint is given), record metrics.json and a tracker run like a train run. Nothing is fitted."""
    run_dir = writable_dir(run_dir, "run dir")
    if not cfg.get("artifact"):
        raise ConfigError("artifact: give the artifact to evaluate, e.g. artifact=outputs/runs/<time>/compressed.safetensors")
    check_common(cfg)
    compressed = read_artifact(cfg.artifact, key=artifact_key())
    checkpoint = cfg.model.get("checkpoint")
    if not checkpoint and not compressed.uncompressed:
        raise ConfigError(f"{cfg.artifact}: it does not store the parameters its compressor left alone; give the "
                          "base model as model.checkpoint=... (runs store it unless store_uncompressed=false)")
    parts = build_parts(cfg)
    model = parts.model
    if checkpoint:
        model = load_checkpoint(model, checkpoint, trusted_pickle=bool(cfg.model.get("trusted_pickle")))
    rebuilt = rebuild_model(compressed, model, source=str(cfg.artifact))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    parts.tracker.start(resolved, run_dir, run_name=f"{cfg.model.name}-{compressed.compressor}-evaluate",
                        job_type="evaluate", tags=[parts.task.name, cfg.data.name, cfg.model.name])
    try:
        eval_trainer = trainer_factory(cfg, run_dir, None, single_device=True)
        rebuilt_metrics = parts.task.evaluate(rebuilt, parts.data, eval_trainer)
        base_metrics = parts.task.evaluate(model.eval(), parts.data, eval_trainer) if checkpoint else None
        metrics = _artifact_metrics(cfg, parts, compressed, model, base_metrics, rebuilt_metrics)
        metrics["layers"] = layer_table(model, rebuilt, compressed.meta["replaced"]) if checkpoint else []
        if cfg.get("export"):
            metrics["exported"] = str(write_state_dict(rebuilt, cfg.export))
        write_metrics_json(run_dir, metrics)
        parts.tracker.log_summary(metrics)
    finally:
        parts.tracker.finish()
    log.info(evaluation_line(metrics))
    return metrics


def _artifact_metrics(cfg, parts: RunParts, compressed: Compressed, model: nn.Module, base_metrics, rebuilt_metrics):
    replaced = compressed.meta["replaced"]
    params = dict(model.named_parameters())
    artifact_bytes = Path(cfg.artifact).stat().st_size
    compressed_bytes = compressed.compressed_bytes(artifact_key())
    original_bytes = fp32_bytes(sum(params[name].numel() for name in replaced if name in params))
    metric = parts.task.metric_name
    metrics = {
        "task": parts.task.name, "data": cfg.data.name, "model": cfg.model.name,
        "compressor": compressed.compressor, "artifact": str(cfg.artifact), "artifact_bytes": artifact_bytes,
        "compressed_bytes": compressed_bytes, "stored_uncompressed": bool(compressed.uncompressed),
        "original_bytes": original_bytes, "compression_ratio": original_bytes / compressed_bytes,
        "metric_name": metric, "compressed_metric": rebuilt_metrics[metric],
        "base_metric": None if base_metrics is None else base_metrics[metric],
        "metric_drop": None if base_metrics is None else base_metrics[metric] - rebuilt_metrics[metric],
        "base_model_source": f"checkpoint:{cfg.model.checkpoint}" if cfg.model.get("checkpoint") else None,
    }
    for key in sorted(set(rebuilt_metrics) - {metric}):
        metrics[f"compressed_{key}"] = rebuilt_metrics[key]
        if base_metrics is not None:
            metrics[f"base_{key}"] = base_metrics.get(key)
    return metrics


def evaluation_line(metrics: dict[str, Any]) -> str:
    name, base = metrics["metric_name"], metrics["base_metric"]
    against = f"base {base:.4f} -> " if base is not None else ""
    return (f"[evaluate {metrics['compressor']}] ratio {metrics['compression_ratio']:.2f}x "
            f"({metrics['artifact_bytes']} bytes on disk) | {name}: {against}rebuilt {metrics['compressed_metric']:.4f}")
