"""Every compressor end to end on ImageNet-size models, on this machine: does it finish, how long, how much memory.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/big_models.py --data-root ../shared/data/cifar10 \
        [--models resnet18,resnet50,cifar_resnet56,unet_resnet34] [--compressors quant,...] [--fit-steps N] \
        [--set trainer=gpu ...]

Each (model, compressor) is one real run of `src/train.py` in its own process: the model (seeded random
weights, saved once as a .safetensors checkpoint and given as `model.checkpoint`) is compressed at
`compressor.target_ratio=8`, the artifact is written, the model is rebuilt from it and both are evaluated, exactly
as a user's run. Models: torchvision ResNet-18 and ResNet-50 and CIFAR ResNet-56 on CIFAR-10 (32 x 32 images, the
whole test split), and an smp U-Net with a ResNet-34 encoder (encoder depth 5) on the procedural shapes data at 64 x 64. Big2Small
runs its defaults (it fits only the INRs predicted to win; `--fit-steps` sets fit.steps, e.g. for
`--compressors big2small_paper`, whose 1,000 steps on every layer would take hours per model on a CPU:
fit_scale.py projects them). Printed per run: seconds, peak resident memory of the run's process against the bound
10 x the model's fp32 size + 2 GB, the measured compression ratio and the base and rebuilt metric (random weights:
the metrics show that the rebuilt model runs, not how good the method is); then, for the runs that time their
phases, the seconds of each phase and the layers predicted and stored as INRs. `--set` adds an override to every
run: `--set trainer=gpu` runs every loop on one GPU (the peak memory is then the process's host memory only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from safetensors.torch import save_file

from big2small.config_store import register_compressor_defaults

ROOT = Path(__file__).resolve().parents[1]
COMPRESSORS = ("quant", "kmeans", "magnitude", "lq_prune", "svd", "id_prune", "hyper", "big2small")
BOUND_FACTOR, BOUND_FIXED_BYTES = 10, 2 << 30


def model_overrides(name: str, data_root: str) -> list[str]:
    if name in ("resnet18", "resnet50"):
        return ["data=cifar10", f"data.root={data_root}", "model=torchvision", f"model.name={name}"]
    if name == "cifar_resnet56":
        return ["data=cifar10", f"data.root={data_root}", "model=cifar_resnet56"]
    if name == "unet_resnet34":
        return ["task=segmentation", "data.image_size=64", "model.net.encoder_name=resnet34",
                "model.net.encoder_depth=5", "model.net.decoder_channels=[256,128,64,32,16]"]
    raise SystemExit(f"unknown model {name!r}; known: resnet18, resnet50, cifar_resnet56, unet_resnet34")


def write_checkpoint(overrides: list[str], path: Path) -> int:
    """Seeded random weights of the model the overrides build, as a checkpoint; returns its fp32 bytes."""
    register_compressor_defaults()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.manual_seed(0)
    net = instantiate(cfg.model.net, _convert_="all")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return 4 * sum(p.numel() for p in net.parameters())


def run(overrides: list[str], run_dir: Path) -> tuple[int, float, int, str]:
    """One src/train.py run: (exit code, seconds, peak RSS bytes of its process, last stderr line)."""
    command = [sys.executable, str(ROOT / "src" / "train.py"), *overrides, "logger=none",
               f"hydra.run.dir={run_dir}", f"paths.cache_dir={run_dir / 'cache'}"]
    started = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "WANDB_MODE": "offline"})
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    lines = (run_dir.parent / f"{run_dir.name}.log").read_text().strip().splitlines()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss * 1024, lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default="../shared/data/cifar10")
    parser.add_argument("--models", default="resnet18,resnet50,unet_resnet34")
    parser.add_argument("--compressors", default=",".join(COMPRESSORS))
    parser.add_argument("--fit-steps", type=int, default=None,
                        help="Big2Small fitting steps (default: the compressor's; the default fits only the INRs "
                             "predicted to win)")
    parser.add_argument("--keep", help="keep run folders and logs here instead of a temporary folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override for every run, e.g. trainer=gpu (repeatable)")
    args = parser.parse_args()
    steps = "its default fitting steps" if args.fit_steps is None else f"{args.fit_steps} fitting step(s)"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"CPU, {torch.get_num_threads()} thread(s), {gpu}; overrides {args.set or 'none'}; every compressor at "
          f"target_ratio 8; Big2Small {steps}", flush=True)
    phase_rows = []
    print("| model | fp32 MB | compressor | exit | s | peak GB | bound GB | within | ratio | base | rebuilt |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for model in args.models.split(","):
            overrides = model_overrides(model, str(Path(args.data_root).resolve()))
            checkpoint = folder / f"{model}.safetensors"
            weight_bytes = write_checkpoint(overrides, checkpoint)
            bound = BOUND_FACTOR * weight_bytes + BOUND_FIXED_BYTES
            for name in args.compressors.split(","):
                extra = [f"compressor={name}", "compressor.target_ratio=8", f"model.checkpoint={checkpoint}"]
                if name.startswith("big2small") and args.fit_steps is not None:  # big2small, big2small_paper
                    extra.append(f"compressor.fit.steps={args.fit_steps}")
                run_dir = folder / f"{model}-{name}"
                code, seconds, peak, last = run([*overrides, *extra, *args.set], run_dir)
                row = f"| {model} | {weight_bytes / 1e6:.1f} | {name} | {code} | {seconds:.0f} | {peak / 1e9:.2f} | " \
                      f"{bound / 1e9:.2f} | {'yes' if peak <= bound else 'NO'} |"
                metrics_file = run_dir / "metrics.json"
                if code == 0 and metrics_file.exists():
                    metrics = json.loads(metrics_file.read_text())
                    row += f" {metrics['compression_ratio']:.2f} | {metrics['base_metric']:.4f} | " \
                           f"{metrics['compressed_metric']:.4f} |"
                    if metrics.get("phase_seconds"):
                        phase_rows.append(phase_row(model, name, metrics))
                else:
                    row += f" failed: {last[:120]} | | |"
                print(row, flush=True)

    if phase_rows:
        print("\nWhere the fit's seconds went (phase_seconds of metrics.json; - : the phase did not run), and how "
              "the layers were predicted and stored:\n")
        print("| model | compressor | " + " | ".join(PHASES) + " | predicted INR | stored INR / codes |")
        print("|---|---|" + "---|" * (len(PHASES) + 2))
        print("\n".join(phase_rows))


PHASES = ("allocation", "inr_prediction", "weight_fitting", "codec_choice", "input_synthesis", "compensation", "refinement")


def phase_row(model: str, name: str, metrics: dict) -> str:
    seconds = metrics["phase_seconds"]
    layers = metrics.get("layers", [])
    predicted = sum(row.get("predicted_as") == "inr" for row in layers)
    stored = [row.get("stored_as") for row in layers]
    return f"| {model} | {name} | " + " | ".join(f"{seconds[p]:.0f}" if p in seconds else "-" for p in PHASES) + \
        f" | {predicted}/{len(layers)} | {stored.count('inr')} / {stored.count('codes')} |"


if __name__ == "__main__":
    main()
