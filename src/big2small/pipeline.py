"""One run: build everything, get the base model, compress, write and re-read the artifact, evaluate, record.

Each step is one call, readable top-down; nothing here knows which compressor, task or model it runs.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch import nn

from big2small.base_model import base_model_cache_key, obtain_base_model
from big2small.codec import read_artifact, write_artifact
from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.files import writable_dir, write_state_dict
from big2small.parts import RunParts, artifact_key, build_parts, trainer_factory
from big2small.rebuilding import layer_table, rebuild_model, store_rest
from big2small.runs import finished_job_metrics
from big2small.tracking import Tracker, write_metrics_json

log = logging.getLogger(__name__)

ARTIFACT_FILE = "compressed.safetensors"
def run(cfg: DictConfig, run_dir: str | Path, config_name: str | None = None) -> dict[str, Any]:
    """Execute one run and return the metrics written to run_dir/metrics.json. `config_name`: the compressor
    config the run chose (`compressor=big2small_paper`), which names the run; default: the compressor's name."""
    run_dir = writable_dir(run_dir, "run dir")
    done = finished_job_metrics(run_dir, cfg) if cfg.get("sweep") and cfg.sweep.get("skip_done") else None
    if done is not None:
        log.info("skipped %s: its metrics.json is complete (sweep.skip_done=true)", run_dir)
        return done
    parts = build_parts(cfg)
    writable_dir(Path(cfg.paths.cache_dir) / "base_models", "cache dir")  # before the base model is trained
    resolved = OmegaConf.to_container(cfg, resolve=True)
    config_name = config_name or parts.compressor.name
    parts.tracker.start(resolved, run_dir, run_name=f"{cfg.model.name}-{config_name}-s{cfg.seed}",
                        job_type=config_name, tags=[parts.task.name, cfg.data.name, cfg.model.name])
    try:
        metrics = _execute(cfg, parts, run_dir, config_name)
    finally:
        parts.tracker.finish()  # one tracker run per job, closed even when the job fails
    log.info(summary_line(metrics))
    return metrics


def _execute(cfg: DictConfig, parts: RunParts, run_dir: Path, config_name: str) -> dict[str, Any]:
    seed = int(cfg.seed)
    make_trainer = trainer_factory(cfg, run_dir, parts.tracker)
    eval_trainer = trainer_factory(cfg, run_dir, None, single_device=True)

    cache_key = base_model_cache_key(
        OmegaConf.to_container(cfg.model.net, resolve=True), OmegaConf.to_container(cfg.data, resolve=True),
        seed, parts.task,
    )
    base_model, base_source = obtain_base_model(
        parts.model, checkpoint=cfg.model.get("checkpoint"), trusted_pickle=bool(cfg.model.get("trusted_pickle")),
        task=parts.task, data=parts.data, make_trainer=lambda **kw: make_trainer(logger_prefix="base", **kw),
        cache_dir=Path(cfg.paths.cache_dir) / "base_models", cache_key=cache_key, seed=seed,
    )
    base_model.eval()

    L.seed_everything(seed, workers=True, verbose=False)
    started = time.perf_counter()
    compressed = parts.compressor.compress(
        copy.deepcopy(base_model),
        data=parts.data if parts.compressor.uses_data else None,
        trainer_factory=lambda **kw: make_trainer(logger_prefix="fit", **kw),
    )
    fit_seconds = time.perf_counter() - started

    if cfg.get("store_uncompressed"):  # the whole model in one file: the rest of its state and its architecture
        store_rest(compressed, base_model)
    artifact_path = run_dir / ARTIFACT_FILE
    key = artifact_key()
    artifact_bytes = write_artifact(compressed, artifact_path, key=key)
    try:  # no artifact is left without its metrics.json
        # What the compressor produced, apart from any stored rest of the model: the artifact without it.
        compressed_bytes = compressed.compressed_bytes(key)
        started = time.perf_counter()
        rebuilt_model = rebuild_from_artifact(artifact_path, base_model)
        decode_seconds = time.perf_counter() - started

        base_metrics = parts.task.evaluate(base_model, parts.data, eval_trainer)
        rebuilt_metrics = parts.task.evaluate(rebuilt_model, parts.data, eval_trainer)

        replaced = compressed.meta["replaced"]
        metrics = _run_metrics(cfg, parts, base_model, replaced, compressed_bytes, artifact_bytes - compressed_bytes,
                               base_metrics, rebuilt_metrics)
        metrics.update(
            fit_seconds=fit_seconds, decode_seconds=decode_seconds, seed=seed, base_model_source=base_source,
            artifact=str(artifact_path), uses_data=parts.compressor.uses_data, compressor_config=config_name,
        )
        if compressed.phase_seconds:  # where fit_seconds went, for compressors that time their phases
            metrics["phase_seconds"] = {name: round(s, 3) for name, s in compressed.phase_seconds.items()}
        metrics["layers"] = layer_table(base_model, rebuilt_model, replaced, compressed.layer_stats)

        if cfg.get("export"):
            metrics["exported"] = str(write_state_dict(rebuilt_model, cfg.export))
        write_metrics_json(run_dir, metrics)
    except BaseException:
        artifact_path.unlink(missing_ok=True)
        raise
    parts.tracker.log_summary(metrics)
    parts.tracker.log_table("layers", metrics["layers"])
    if parts.tracker.logs_artifacts:
        _log_artifact(parts.tracker, artifact_path, cfg.model.name, config_name, base_source, metrics)
    return metrics


def _log_artifact(tracker: Tracker, path: Path, model: str, compressor: str, base_source: str, metrics) -> None:
    tracker.log_artifact(path, _artifact_name(model, compressor), {
        "compressor": compressor, "compression_ratio": metrics["compression_ratio"],
        "artifact_bytes": metrics["artifact_bytes"], "stored_uncompressed": metrics["stored_uncompressed"],
        "metric_name": metrics["metric_name"], "compressed_metric": metrics["compressed_metric"],
        "base_metric": metrics["base_metric"], "base_model_sha256": _file_sha256(base_source.split(":", 1)[1]),
    })


def _artifact_name(model: str, compressor: str) -> str:
    """A W&B artifact name (letters, digits, '-', '_', '.'): one artifact, versioned, per model and compressor."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{model}-{compressor}")


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rebuild_from_artifact(artifact_path: Path, base_model: nn.Module) -> nn.Module:
    """A copy of `base_model` whose replaced parameters come from the artifact alone (rebuilding.rebuild_model)."""
    return rebuild_model(read_artifact(artifact_path, key=artifact_key()), base_model, source=str(artifact_path))


def header_lines(cfg: DictConfig, compressor_name: str, overrides: list[str] | None = None) -> list[str]:
    """What a run is, in a few lines (the whole resolved config is in .hydra/config.yaml and the W&B run)."""
    checkpoint = cfg.model.get("checkpoint")
    compressor = cfg.compressor
    settings = [f"{key}={compressor[key]}" for key in compressor
                if key not in ("_target_", "seed", "layer_types", "min_params")
                and not OmegaConf.is_dict(compressor[key]) and not OmegaConf.is_interpolation(compressor, key)]
    lines = [
        f"task {cfg.task.get('name', '?')} | data {cfg.data.get('name', '?')} | model {cfg.model.get('name', '?')} "
        f"({'weights from ' + str(checkpoint) if checkpoint else 'trained here, or from the cache'}) | seed {cfg.get('seed')}",
        f"compressor {compressor_name}: {' '.join(settings) or '(no size setting)'}",
    ]
    if overrides:
        lines.append(f"overrides: {' '.join(overrides)}")
    return lines


def summary_line(metrics: dict[str, Any]) -> str:
    name = metrics["metric_name"]
    return (
        f"[{metrics.get('compressor_config', metrics['compressor'])}] ratio {metrics['compression_ratio']:.2f}x "
        f"(model {metrics['model_compression_ratio']:.2f}x, {metrics['compressed_bytes']} bytes) | "
        f"{name}: base {metrics['base_metric']:.4f} -> rebuilt {metrics['compressed_metric']:.4f} "
        f"(drop {metrics['metric_drop']:+.4f})" + _storage_counts(metrics.get("layers", []))
    )


def _storage_counts(layers: list[dict[str, Any]]) -> str:
    """' | INR a/n, codes b/n[, fp16 c/n]' for compressors whose layer rows say how each layer is stored."""
    kinds = [row["stored_as"] for row in layers if "stored_as" in row]
    if not kinds:
        return ""
    counts = [f"INR {kinds.count('inr')}/{len(kinds)}", f"codes {kinds.count('codes')}/{len(kinds)}"]
    if "fp16" in kinds:
        counts.append(f"fp16 {kinds.count('fp16')}/{len(kinds)}")
    return " | " + ", ".join(counts)


def _run_metrics(cfg, parts: RunParts, base_model, replaced, compressed_bytes, stored_uncompressed_bytes,
                 base_metrics, rebuilt_metrics):
    params = dict(base_model.named_parameters())
    replaced_count = sum(params[name].numel() for name in replaced if name in params)
    total_count = sum(p.numel() for p in params.values())
    original_bytes = fp32_bytes(replaced_count)
    # The rest of the model: its bytes in the artifact when stored there, else what it takes in fp32 beside it.
    uncompressed_bytes = stored_uncompressed_bytes or fp32_bytes(total_count - replaced_count)
    metric = parts.task.metric_name
    metrics = {
        "task": parts.task.name,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "compressor": parts.compressor.name,
        "target_ratio": parts.compressor.target_ratio,
        "num_parameters": total_count,
        "original_bytes": original_bytes,
        "compressed_bytes": compressed_bytes,
        "uncompressed_bytes": uncompressed_bytes,
        "stored_uncompressed": stored_uncompressed_bytes > 0,
        "artifact_bytes": compressed_bytes + stored_uncompressed_bytes,
        "compression_ratio": original_bytes / compressed_bytes,
        "model_compression_ratio": fp32_bytes(total_count) / (compressed_bytes + uncompressed_bytes),
        "metric_name": metric,
        "base_metric": base_metrics[metric],
        "compressed_metric": rebuilt_metrics[metric],
        "metric_drop": base_metrics[metric] - rebuilt_metrics[metric],
    }
    for key in sorted(set(base_metrics) - {metric}):
        metrics[f"base_{key}"] = base_metrics[key]
        metrics[f"compressed_{key}"] = rebuilt_metrics.get(key)
    return metrics
