"""What the synthesis's BatchNorm statistics from row sums are worth, on CIFAR ResNet-20 at 8x.

    OMP_NUM_THREADS=2 python benchmarks/step_speed.py [--reps 3] [--input-steps 20] [--steps 200]

In one process, rep after rep, it fits the same plan two ways and prints each fit's `input_synthesis` and
`refinement` seconds, then each way's mean: `default`, as the package runs (synthesis.channel_moments: sums over
each (input, channel) row), and `var_mean`, the statistics from torch.var_mean over dims (0, 2, 3). Alternating the
ways within one process keeps a shared machine's drift out of the comparison.
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import contextmanager, nullcontext

import torch
from big2small_common import cifar_resnet, fit_and_rebuild, setup

from big2small.methods.big2small import synthesis


def var_mean_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    var, mean = torch.var_mean(x, dim=[0, *range(2, x.dim())], unbiased=False)
    return mean, var


@contextmanager
def var_mean():
    moments = synthesis.channel_moments
    synthesis.channel_moments = var_mean_moments
    try:
        yield
    finally:
        synthesis.channel_moments = moments


WAYS = {"default": nullcontext, "var_mean": var_mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--input-steps", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    setup()
    model = cifar_resnet("resnet20")
    seconds: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    print(f"ResNet-20 at 8x, 256 synthetic inputs of {args.input_steps} steps, {args.steps} refinement steps of 32; "
          f"{torch.get_num_threads()} threads")
    for rep in range(args.reps):
        for way, context in WAYS.items():
            with context():
                result = fit_and_rebuild(model, target_ratio=8, seed=0, input_shape=[3, 32, 32],
                                         refinement={"input_steps": args.input_steps, "steps": args.steps,
                                                     "light_above_bits": None})
            phases = result["compressed"].phase_seconds
            seconds[way].append((phases["input_synthesis"], phases["refinement"]))
            print(f"rep {rep} {way:>15}: synthesis {phases['input_synthesis']:6.2f} s, "
                  f"refinement {phases['refinement']:6.2f} s", flush=True)
    print("\n| way | synthesis s (mean) | refinement s (mean) |\n|---|---|---|")
    for way, runs in seconds.items():
        print(f"| {way} | {statistics.mean(s for s, _ in runs):.2f} | {statistics.mean(r for _, r in runs):.2f} |")


if __name__ == "__main__":
    main()
