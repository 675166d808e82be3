"""Build sweep dirs on disk the way a Hydra multirun leaves them (metrics.json + .hydra/overrides.yaml per job)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml


def write_job(sweep_dir: Path, name: str, *, compressor: str, ratio: float, metric: float, base: float = 0.80,
              seed: int = 0, target_ratio: float | None = None, overrides: list[str] | None = None,
              model: str = "cifar_resnet20", data: str = "cifar10",
              uses_data: bool = False) -> Path:
    job = Path(sweep_dir) / name
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    if overrides is None:
        overrides = [f"compressor={compressor}", f"compressor.target_ratio={target_ratio}", f"seed={seed}"]
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    metrics = {
        "task": "classification", "data": data, "model": model, "compressor": compressor,
        "target_ratio": target_ratio, "num_parameters": 1000, "original_bytes": 4000,
        "compressed_bytes": int(4000 / ratio), "uncompressed_bytes": 0, "compression_ratio": ratio,
        "model_compression_ratio": ratio * 0.95, "metric_name": "accuracy", "base_metric": base,
        "compressed_metric": metric, "metric_drop": base - metric, "seed": seed, "uses_data": uses_data,
        "layers": [{"layer": "conv.weight", "params": 1000}],
    }
    (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def write_unfinished_job(sweep_dir: Path, name: str, overrides: list[str]) -> Path:
    """A job Hydra started that has not (or never) written its metrics.json."""
    job = Path(sweep_dir) / name
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return job


def rate_sweep(sweep_dir: Path) -> Path:
    """quant at 4x/8x and magnitude at 2x/4x, two seeds each; base accuracy 0.80."""
    results = {
        ("quant", 4): [(4.1, 0.795), (4.1, 0.793)],
        ("quant", 8): [(8.0, 0.760), (8.0, 0.740)],
        ("magnitude", 2): [(1.9, 0.792), (1.9, 0.794)],
        ("magnitude", 4): [(3.0, 0.420), (3.0, 0.430)],
    }
    for (compressor, target), per_seed in results.items():
        for seed, (ratio, metric) in enumerate(per_seed):
            write_job(sweep_dir, f"{compressor}/compressor.target_ratio={target},seed={seed}", compressor=compressor,
                      ratio=ratio, metric=metric, seed=seed, target_ratio=float(target))
    return Path(sweep_dir)
