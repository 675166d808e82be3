"""One run: build everything, get the base model, compress, write and re-read the artifact, evaluate, record.

Each step is one call, readable top-down; nothing here knows which compressor, task or model it runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file
from torch import nn

from big2small.base_model import base_model_cache_key, obtain_base_model
from big2small.checkpoints import load_checkpoint
from big2small.codec import Compressed, read_artifact, write_artifact
from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.errors import ConfigError, OutputError
from big2small.logs import PhaseProgressBar
from big2small.methods.base import Compressor
from big2small.numerics import DENOMINATOR_FLOOR
from big2small.rebuilding import rebuild_model, uncompressed_state
from big2small.runs import finished_job_metrics
from big2small.tasks.base import Task
from big2small.tracking import Tracker, write_metrics_json
from big2small.values import as_integer

log = logging.getLogger(__name__)

ARTIFACT_FILE = "compressed.safetensors"
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
    _check_common(cfg)
    # Seed before building anything: the model's initial weights come from the global RNG.
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    data = _build(cfg.data)
    task = _build(cfg.task)
    model = _build(cfg.model.net)
    compressor = _build(cfg.compressor)
    # Synthetic inputs (Big2Small's refinement) must have the data's shape; a user's own data module may not say.
    data_shape = getattr(data, "input_shape", None)
    compressor.accept_input_shape(data_shape() if callable(data_shape) else None)
    tracker = _build(cfg.logger) if cfg.get("logger") else Tracker()
    checkpoint = cfg.model.get("checkpoint")
    if checkpoint and not Path(checkpoint).is_file():
        raise ConfigError(f"model.checkpoint: file not found: {checkpoint}")
    _check_trainer(cfg)
    return RunParts(data, task, model, compressor, tracker)


def _check_trainer(cfg: DictConfig) -> None:
    """Build one Trainer from conf/trainer now, so that a device that is not there (trainer=gpu on a machine
    without one, trainer.devices=0) is a one-line error before any training, not after the artifact."""
    try:
        _trainer_factory(cfg, Path("."), None)(enable_progress_bar=False)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - Lightning raises many types for device settings it cannot meet
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"trainer: {first}") from None


def writable_dir(path: Path, what: str) -> Path:
    """`path`, created if needed and proven writable, or an OutputError naming it."""
    path = Path(path)
    probe = path / ".write-test"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OutputError(f"cannot write the {what} {path}: {error.strerror or error}") from None
    return path


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Execute one run and return the metrics written to run_dir/metrics.json."""
    run_dir = writable_dir(run_dir, "run dir")
    done = finished_job_metrics(run_dir, cfg) if cfg.get("sweep") and cfg.sweep.get("skip_done") else None
    if done is not None:
        log.info("skipped %s: its metrics.json is complete (sweep.skip_done=true)", run_dir)
        return done
    parts = build_parts(cfg)
    writable_dir(Path(cfg.paths.cache_dir) / "base_models", "cache dir")  # before the base model is trained
    resolved = OmegaConf.to_container(cfg, resolve=True)
    parts.tracker.start(resolved, run_dir, run_name=f"{cfg.model.name}-{parts.compressor.name}-s{cfg.seed}",
                        job_type=parts.compressor.name, tags=[parts.task.name, cfg.data.name, cfg.model.name])
    try:
        metrics = _execute(cfg, parts, run_dir)
    finally:
        parts.tracker.finish()  # one tracker run per job, closed even when the job fails
    log.info(summary_line(metrics))
    return metrics


def _execute(cfg: DictConfig, parts: RunParts, run_dir: Path) -> dict[str, Any]:
    seed = int(cfg.seed)
    make_trainer = _trainer_factory(cfg, run_dir, parts.tracker)
    eval_trainer = _trainer_factory(cfg, run_dir, None, single_device=True)

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

    if cfg.get("store_uncompressed"):
        compressed.uncompressed = uncompressed_state(base_model, compressed.meta["replaced"])
    artifact_path = run_dir / ARTIFACT_FILE
    key = artifact_key()
    artifact_bytes = write_artifact(compressed, artifact_path, key=key)
    try:  # no artifact is left without its metrics.json
        # What the compressor produced, apart from any stored uncompressed state: the artifact without it.
        compressed_bytes = len(dataclasses.replace(compressed, uncompressed={}).to_bytes(key)) \
            if compressed.uncompressed else artifact_bytes
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
            artifact=str(artifact_path), uses_data=parts.compressor.uses_data,
        )
        metrics["layers"] = layer_table(base_model, rebuilt_model, replaced, compressed.layer_stats)

        if cfg.get("export"):
            metrics["exported"] = str(export_state_dict(rebuilt_model, cfg.export))
        write_metrics_json(run_dir, metrics)
    except BaseException:
        artifact_path.unlink(missing_ok=True)
        raise
    parts.tracker.log_summary(metrics)
    parts.tracker.log_table("layers", metrics["layers"])
    if parts.tracker.logs_artifacts:
        _log_artifact(parts.tracker, artifact_path, cfg.model.name, parts.compressor.name, base_source, metrics)
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


def evaluate_artifact(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """`src/evaluate.py`: verify and rebuild an existing artifact, evaluate it (and the base model when a
    checkpoint is given), record metrics.json and a tracker run like a train run. Nothing is fitted."""
    run_dir = writable_dir(run_dir, "run dir")
    if not cfg.get("artifact"):
        raise ConfigError("artifact: give the artifact to evaluate, e.g. artifact=outputs/runs/<time>/compressed.safetensors")
    _check_common(cfg)
    compressed = read_artifact(cfg.artifact, key=artifact_key())
    checkpoint = cfg.model.get("checkpoint")
    if not checkpoint and not compressed.uncompressed:
        raise ConfigError(f"{cfg.artifact}: it does not store the parameters its compressor left alone; give the "
                          "base model as model.checkpoint=... (or write artifacts with store_uncompressed=true)")
    parts = build_parts(cfg)
    model = parts.model
    if checkpoint:
        model = load_checkpoint(model, checkpoint, trusted_pickle=bool(cfg.model.get("trusted_pickle")))
    rebuilt = rebuild_model(compressed, model, source=str(cfg.artifact))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    parts.tracker.start(resolved, run_dir, run_name=f"{cfg.model.name}-{compressed.compressor}-evaluate",
                        job_type="evaluate", tags=[parts.task.name, cfg.data.name, cfg.model.name])
    try:
        eval_trainer = _trainer_factory(cfg, run_dir, None, single_device=True)
        rebuilt_metrics = parts.task.evaluate(rebuilt, parts.data, eval_trainer)
        base_metrics = parts.task.evaluate(model.eval(), parts.data, eval_trainer) if checkpoint else None
        metrics = _artifact_metrics(cfg, parts, compressed, model, base_metrics, rebuilt_metrics)
        metrics["layers"] = layer_table(model, rebuilt, compressed.meta["replaced"]) if checkpoint else []
        if cfg.get("export"):
            metrics["exported"] = str(export_state_dict(rebuilt, cfg.export))
        write_metrics_json(run_dir, metrics)
        parts.tracker.log_summary(metrics)
    finally:
        parts.tracker.finish()
    log.info(evaluation_line(metrics))
    return metrics


def export_state_dict(model: nn.Module, path: str | Path) -> Path:
    """The rebuilt model's whole state_dict as plain safetensors (loadable with torch + safetensors alone)."""
    path = Path(path)
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(path))
    except OSError as error:
        raise OutputError(f"cannot write the export {path}: {error.strerror or error}") from None
    return path


def _artifact_metrics(cfg, parts: RunParts, compressed: Compressed, model: nn.Module, base_metrics, rebuilt_metrics):
    replaced = compressed.meta["replaced"]
    params = dict(model.named_parameters())
    artifact_bytes = Path(cfg.artifact).stat().st_size
    compressed_bytes = len(dataclasses.replace(compressed, uncompressed={}).to_bytes(artifact_key())) \
        if compressed.uncompressed else artifact_bytes
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


def rebuild_from_artifact(artifact_path: Path, base_model: nn.Module) -> nn.Module:
    """A copy of `base_model` whose replaced parameters come from the artifact alone (rebuilding.rebuild_model)."""
    return rebuild_model(read_artifact(artifact_path, key=artifact_key()), base_model, source=str(artifact_path))


def layer_table(base_model: nn.Module, rebuilt_model: nn.Module, replaced: list[str],
                extra: dict[str, dict] | None = None) -> list[dict[str, Any]]:
    """Per replaced parameter: size and relative reconstruction error ||W' - W|| / ||W|| (where shapes match)."""
    rebuilt_params = dict(rebuilt_model.named_parameters())
    rows = []
    for name in replaced:
        original = base_model.get_parameter(name).detach().float()
        row: dict[str, Any] = {"layer": name, "shape": list(original.shape), "params": original.numel()}
        rebuilt = rebuilt_params.get(name)
        if rebuilt is not None and rebuilt.shape == original.shape:
            error = torch.linalg.vector_norm(rebuilt.detach().float() - original)
            row["relative_error"] = float(error / torch.linalg.vector_norm(original).clamp_min(DENOMINATOR_FLOOR))
        row.update((extra or {}).get(name, {}))
        rows.append(row)
    return rows


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
        f"[{metrics['compressor']}] ratio {metrics['compression_ratio']:.2f}x "
        f"(model {metrics['model_compression_ratio']:.2f}x, {metrics['compressed_bytes']} bytes) | "
        f"{name}: base {metrics['base_metric']:.4f} -> rebuilt {metrics['compressed_metric']:.4f} "
        f"(drop {metrics['metric_drop']:+.4f})"
    )


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


def _trainer_factory(cfg: DictConfig, run_dir: Path, tracker: Tracker | None, single_device: bool = False):
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
                          f"{str(reason).splitlines()[0] if str(reason) else ''}") from None


def _check_common(cfg: DictConfig) -> None:
    as_integer("seed", cfg.get("seed"), 0)
    if not isinstance(cfg.get("store_uncompressed", False), bool):
        raise ConfigError(f"store_uncompressed must be true or false (got {cfg.get('store_uncompressed')!r})")
    for group in ("task", "data", "model", "compressor", "trainer"):
        if cfg.get(group) is None:
            raise ConfigError(f"config group {group!r} is missing")

