"""How Big2Small's weight fitting scales with the model: ResNet-20 and -56 (CIFAR) and ResNet-18 and -50 (ImageNet).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/fit_scale.py [--models resnet20,resnet56] [--steps 3] \
        [--loop-steps 1] [--batch-size 65536]

For each model (seeded random weights: the cost does not depend on the values) the default compressor at 8x plans
its INRs exactly as a run does (the public `fit`, stopped when the fitting loop would start), then times fitting
steps of that plan on this machine's device: batched (every stack of equally shaped INRs in one computation, what
runs use) and as a per-layer loop (one INR at a time, same widths). Each model runs in its own process, so the
peak memory (maximum resident set size, read after the batched steps and before the loop's copy of the tables
is made) is that model's planning and fitting alone. Printed per model: INRs and stacks,
planning seconds, seconds per step (batched and looped), projected default fit (steps x s/step), the achieved
GFLOP/s of the batched step against this machine's fp32 matmul rate, and peak memory against the issue's bound
(10 x the fp32 weights + 2 GB). `--batch-size` plans with that `fit.batch_size` (grids with more rows are fitted
on one band of that many rows per step); `--loop-steps 0` skips the per-layer loop; `--compile` also times the
batched steps with every stack's INR compiled by torch.compile, and prints what the compilation cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.fitting import INRFitModule, INRGroup
from big2small.methods.big2small.networks import build_network
from big2small.methods.big2small.settings import FitSettings, INRSettings

MODELS = ("resnet20", "resnet56", "resnet18", "resnet50")
BOUND_FACTOR, BOUND_FIXED_BYTES = 10, 2 << 30
FORWARD_BACKWARD = 3  # a backward pass costs about twice the forward's multiply-adds


class PlanCaptured(Exception):
    """Raised by the capturing trainer once the fitting loop is handed its module."""

    def __init__(self, module) -> None:
        super().__init__("captured")
        self.module = module


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("resnet") and name[6:] in ("20", "56"):
        from big2small.models.cifar_resnet import CifarResNet

        return CifarResNet(depth=int(name[6:]), num_classes=10, in_channels=3)
    from big2small.models.torchvision_models import torchvision_classifier

    return torchvision_classifier(name)


def planned_module(model: torch.nn.Module, batch_size: int | None = None,
                   bits: int | None = None) -> tuple[INRFitModule, float]:
    """The INRFitModule a default 8x run (with that fit.batch_size and storage.bits) would fit, and the seconds
    planning it took."""
    class Capture:
        def fit(self, module, ckpt_path=None):
            raise PlanCaptured(module)

    started = time.perf_counter()
    try:
        Big2SmallCompressor(target_ratio=8, fit={"batch_size": batch_size},
                            storage={"bits": bits} if bits else None).fit(
            model, trainer_factory=lambda **_: Capture())
    except PlanCaptured as captured:
        return captured.module, time.perf_counter() - started
    raise RuntimeError("the compressor fitted no INR")


def per_layer(module: INRFitModule) -> INRFitModule:
    """The same INRs (widths, seeds) as one stack each."""
    groups = []
    for group in module.groups:
        width = group.net.sizes[0][1]
        for target in group.targets:
            groups.append(INRGroup([target], build_network(INRSettings(), target.dims, target.outputs, width,
                                                            [target.ordinal]), group.bits))
    return INRFitModule(groups, module.fit_settings, module.loss_settings, module.storage, module.seed)


def seconds_per_step(module: INRFitModule, steps: int) -> float:
    module.log = lambda *args, **kwargs: None  # a bare loop: what a step costs, without a Trainer around it
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators and kernels
            started = time.perf_counter()
        optimizer.zero_grad()
        module.training_step(None, step).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def step_flops(module: INRFitModule) -> float:
    """Multiply-adds x 2 of one step's MLP layers (on the rows each step sees), forward and backward."""
    total = 0
    for group in module.groups:
        rows = min(group.coords.shape[1], module.fit_settings.batch_size or group.coords.shape[1])
        total += len(group.targets) * rows * sum(i * o for i, o in group.net.sizes)
    return 2.0 * FORWARD_BACKWARD * total


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def compiled_seconds(name: str, batch_size: int | None, bits: int | None, steps: int) -> tuple[float, float]:
    """(seconds of the first step, compilation included; seconds per later step) with every stack's INR forward
    compiled by torch.compile."""
    module, _ = planned_module(build(name), batch_size, bits)
    for group in module.groups:
        group.net.forward = torch.compile(group.net.forward, dynamic=False)
    module.log = lambda *args, **kwargs: None
    started = time.perf_counter()
    module.training_step(None, 0).backward()
    return time.perf_counter() - started, seconds_per_step(module, steps)


def measure(name: str, steps: int, loop_steps: int, batch_size: int | None, bits: int | None,
            compile_stacks: bool) -> dict:
    model = build(name)
    weight_bytes = 4 * sum(p.numel() for p in model.parameters())
    module, plan_seconds = planned_module(model, batch_size, bits)
    batched = seconds_per_step(module, steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the fit's own: before the loop's copy
    looped = seconds_per_step(per_layer(module), loop_steps) if loop_steps else float("nan")
    return {"model": name, "params_mb": weight_bytes / 1e6, "inrs": sum(len(g.targets) for g in module.groups),
            "stacks": len(module.groups), "plan_s": plan_seconds, "batched_s": batched, "looped_s": looped,
            "default_fit_min": batched * FitSettings().steps / 60, "gflops": step_flops(module) / batched / 1e9,
            "peak_gb": peak / 1e9, "bound_gb": (BOUND_FACTOR * weight_bytes + BOUND_FIXED_BYTES) / 1e9,
            "compiled": compiled_seconds(name, batch_size, bits, steps) if compile_stacks else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=3, help="timed batched steps per model (after one warm-up)")
    parser.add_argument("--loop-steps", type=int, default=1, help="timed per-layer-loop steps per model (0: none)")
    parser.add_argument("--batch-size", type=int, default=None, help="fit.batch_size (default: whole grids)")
    parser.add_argument("--bits", type=int, default=None, help="storage.bits (default: the compressor's)")
    parser.add_argument("--compile", action="store_true", help="also time the steps with torch.compile'd INRs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure this model, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.loop_steps, args.batch_size, args.bits, args.compile)))
        return
    print(f"CPU, {torch.get_num_threads()} thread(s); fp32 matmul {matmul_gflops():.1f} GFLOP/s; default Big2Small "
          f"at 8x, fit.batch_size {args.batch_size}, storage.bits {args.bits or 'default'}, {args.steps} batched / {args.loop_steps} looped timed step(s) "
          "per model", flush=True)
    print("| model | fp32 MB | INRs | stacks | plan s | s/step batched | s/step loop | loop/batched | "
          "default fit (1,000 steps) | GFLOP/s | peak GB | bound GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    compiled = []
    for name in args.models.split(","):
        child = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                                "--loop-steps", str(args.loop_steps),
                                *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
                                *(["--bits", str(args.bits)] if args.bits else []),
                                *(["--compile"] if args.compile else [])],
                               capture_output=True, text=True)
        if child.returncode != 0:
            print(f"| {name} | failed: {child.stderr.strip().splitlines()[-1:]} |", flush=True)
            continue
        r = json.loads(child.stdout.strip().splitlines()[-1])
        loop = "– | –" if r["looped_s"] != r["looped_s"] else \
            f"{r['looped_s']:.3f} | {r['looped_s'] / r['batched_s']:.2f}x"
        print(f"| {r['model']} | {r['params_mb']:.1f} | {r['inrs']} | {r['stacks']} | {r['plan_s']:.1f} | "
              f"{r['batched_s']:.3f} | {loop} | "
              f"{r['default_fit_min']:.1f} min | {r['gflops']:.1f} | {r['peak_gb']:.2f} | {r['bound_gb']:.2f} |",
              flush=True)
        if r["compiled"]:
            first, per_step = r["compiled"]
            compiled.append(f"torch.compile, {name}: first step {first:.1f} s (compilation included), then "
                            f"{per_step:.3f} s/step ({r['batched_s'] / per_step:.2f}x eager)")
    print("\n".join(compiled), flush=True)


if __name__ == "__main__":
    main()
