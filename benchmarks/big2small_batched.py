"""Batched multi-INR fitting against a layer-by-layer loop, at equal steps, on ResNet-20's weights.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big2small_batched.py --steps 100

Both variants fit the same INRs (same shapes, same seeds, same loss, one Adam over all parameters); the batched
one evaluates every stack of equally shaped INRs (same shape and row count) with one baddbmm per MLP layer, the loop evaluates each layer's
INR on its own. Prints seconds per step of each and the speed-up, for the plain MSE loss and for the
Frequency-Aware Loss (whose per-layer FFTs are a loop in both variants), and with sampled coordinates.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from big2small_common import resnet20, setup

from big2small.methods.big2small.coords import build_targets
from big2small.methods.big2small.fitting import INRFitModule, INRGroup
from big2small.methods.big2small.networks import build_network
from big2small.methods.big2small.outliers import preprocess
from big2small.methods.big2small.settings import (
    FitSettings,
    INRSettings,
    LossSettings,
    OutlierSettings,
    StorageSettings,
)


def stacks(targets, settings: INRSettings, per_layer: bool) -> list[INRGroup]:
    by_shape = defaultdict(list)
    for target in targets:
        by_shape[target.key if per_layer else (target.dims, target.outputs, target.coords.shape[0])].append(target)
    bits = StorageSettings().bit_choices[0]  # the default storage, as seconds_per_step's module has it
    return [INRGroup(members, build_network(settings, members[0].dims, members[0].outputs, settings.width,
                                            [t.ordinal for t in members]), bits) for members in by_shape.values()]


def seconds_per_step(groups, loss: LossSettings, steps: int, batch_size: int | None) -> float:
    module = INRFitModule(groups, FitSettings(steps=steps, batch_size=batch_size), loss, StorageSettings(), seed=0)
    module.log = lambda *args, **kwargs: None  # no Trainer here: both variants run the same bare loop
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for step in range(steps + 5):
        if step == 5:  # after warm-up
            started = time.perf_counter()
        optimizer.zero_grad()
        module.training_step(None, step).backward()
        optimizer.step()
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=24)
    args = parser.parse_args()
    setup()
    model = resnet20()
    weights = {n: p.detach() for n, p in model.named_parameters() if p.dim() > 1}
    prepared = {n: preprocess(w, OutlierSettings()).target for n, w in weights.items()}
    targets = build_targets(prepared, "kernel", "layer")
    settings = INRSettings(width=args.width)
    print(f"ResNet-20: {len(targets)} per-layer INRs (kernel unit, width {args.width}), {args.steps} steps, "
          f"{torch.get_num_threads()} thread(s)")
    variants = (("MSE, whole grid", LossSettings(frequency_weight=0.0), None),
                ("frequency-aware, whole grid", LossSettings(), None),
                ("MSE, 512 sampled coords/INR", LossSettings(frequency_weight=0.0), 512))
    for name, loss, batch_size in variants:
        batched = seconds_per_step(stacks(targets, settings, per_layer=False), loss, args.steps, batch_size)
        looped = seconds_per_step(stacks(targets, settings, per_layer=True), loss, args.steps, batch_size)
        print(f"{name:>28}: batched {batched * 1000:.1f} ms/step, layer loop {looped * 1000:.1f} ms/step, "
              f"speed-up {looped / batched:.2f}x", flush=True)


if __name__ == "__main__":
    main()
