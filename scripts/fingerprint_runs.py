"""Fingerprints of one small run per compressor: the artifact's sha256 and metrics.json without timings.

A refactor must not change behaviour: run this before and after it and compare the two files.

    python scripts/fingerprint_runs.py --out before.json          # on the old code
    python scripts/fingerprint_runs.py --compare before.json      # on the new code; exit 1 on any difference

Every run is `python src/train.py` on the digits data and the small CNN (trained for a few epochs, cached),
so the check takes a few minutes on two cores. Runs write under one fixed work dir (emptied first): paths end up
in artifact headers (Big2Small's fit.checkpoint_dir) and in metrics.json, so both runs must use the same one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# metrics.json keys that measure time or name paths of this machine: they differ between any two runs.
VOLATILE_KEYS = ("fit_seconds", "decode_seconds", "phase_seconds", "artifact")
COMMON = ["data=digits", "model=small_cnn", "task.epochs=3", "logger=none", "seed=0"]
B2S_FAST = ["compressor=big2small", "compressor.fit.steps=60", "compressor.storage.qat_steps=10"]
RUNS: dict[str, list[str]] = {
    "none": ["compressor=none"],
    "quant_bits": ["compressor=quant", "compressor.bits=4"],
    "quant_target": ["compressor=quant", "compressor.target_ratio=6"],
    "kmeans": ["compressor=kmeans", "compressor.target_ratio=6"],
    "hyper": ["compressor=hyper", "compressor.target_ratio=6"],
    "magnitude": ["compressor=magnitude", "compressor.target_ratio=3"],
    "lq_prune": ["compressor=lq_prune"],
    "svd": ["compressor=svd", "compressor.target_ratio=2"],
    "id_prune": ["compressor=id_prune", "compressor.target_ratio=1.5", "compressor.calibration_images=200"],
    "big2small": B2S_FAST,
    "big2small_all_options": [
        *B2S_FAST, "compressor.storage.bits=8", "compressor.permutation.enabled=true",
        "compressor.refinement.enabled=true", "compressor.refinement.steps=5", "compressor.refinement.num_inputs=16",
        "compressor.refinement.input_steps=3", "compressor.inr.scope=model",
    ],
}


def fingerprint(name: str, overrides: list[str], root: Path) -> dict:
    run_dir = root / name
    command = [sys.executable, str(PROJECT_ROOT / "src" / "train.py"), *COMMON, *overrides,
               f"paths.output_root={root}", f"paths.cache_dir={root / 'cache'}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1:]}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in VOLATILE_KEYS:
        metrics.pop(key, None)
    return {"artifact_sha256": hashlib.sha256((run_dir / "compressed.safetensors").read_bytes()).hexdigest(),
            "metrics": metrics}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprints here")
    parser.add_argument("--compare", type=Path, help="compare with fingerprints written earlier")
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), help="a subset of the runs")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "big2small-fingerprints",
                        help="where the runs write (emptied first and removed after)")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    shutil.rmtree(args.workdir, ignore_errors=True)
    prints = {}
    try:
        for name in names:
            prints[name] = fingerprint(name, RUNS[name], args.workdir)
            print(f"{name}: {prints[name].get('artifact_sha256', prints[name].get('error'))}", flush=True)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(prints, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(args.compare.read_text())
        differing = [name for name in names if before.get(name) != prints[name]]
        for name in differing:
            print(f"DIFFERENT: {name}", flush=True)
        print(f"{len(names) - len(differing)} of {len(names)} runs identical", flush=True)
        return 1 if differing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
