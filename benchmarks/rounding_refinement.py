"""What Big2Small's refinement of code roundings does on its own: every ResNet-20 layer stored as codes at quant's
mixed bit widths for a target ratio, then the roundings refined on the default synthetic inputs (data-free).

Prints held-out and test top-1 (big2small_common.py's image sets) for the nearest codes and after refinement at
each `--code-lr`; the default `refinement.code_lr` was chosen on the held-out column.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rounding_refinement.py --ratio 8 --code-lrs 3e-3 1e-2 3e-2
"""

from __future__ import annotations

import argparse
import copy

import torch
from big2small_common import image_sets, resnet20, setup, top1, trainer_factory

from big2small.graph.weights import set_parameter
from big2small.methods.big2small.layer_codes import weight_codes
from big2small.methods.big2small.reconstruct import LayerCode
from big2small.methods.big2small.refinement import RefineModule
from big2small.methods.big2small.rounding_offsets import RoundingOffsets
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import synthetic_inputs
from big2small.methods.quant import UniformQuantizer


def rebuilt(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = copy.deepcopy(model)
    for name, value in values.items():
        set_parameter(model, name, value)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratio", type=float, default=8)
    parser.add_argument("--code-lrs", type=float, nargs="+", default=[1e-2])
    parser.add_argument("--seed", type=int, default=0, help="seeds the synthetic inputs")
    args = parser.parse_args()
    setup()
    model, images = resnet20(), image_sets()
    quant = UniformQuantizer(target_ratio=args.ratio)
    weights = quant.select(model)
    bits = quant.levels_for_target(weights)
    coded = {name: weight_codes(weight, bits[name]) for name, weight in weights.items()}
    print(f"ResNet-20, every layer as codes at quant's bits for {args.ratio:g}x: {sorted(set(bits.values()))}; "
          f"base top-1 held-out {top1(model, *images['heldout']):.4f}, test {top1(model, *images['test']):.4f}")
    nearest = rebuilt(model, {name: codes.values() for name, codes in coded.items()})
    print("| code lr | held-out top-1 | test top-1 |\n|---|---|---|")
    print(f"| nearest codes | {top1(nearest, *images['heldout']):.4f} | {top1(nearest, *images['test']):.4f} |",
          flush=True)
    settings = RefinementSettings()
    inputs = synthetic_inputs(copy.deepcopy(model), [3, 32, 32], settings, args.seed, trainer_factory())
    no_outliers = LayerCode(0.0, 1.0, torch.zeros(0, dtype=torch.long), torch.zeros(0))
    for code_lr in args.code_lrs:
        rounding = RoundingOffsets(weights, coded)
        module = RefineModule([], dict.fromkeys(weights, no_outliers), copy.deepcopy(model), copy.deepcopy(model),
                              inputs, RefinementSettings(code_lr=code_lr), inr_layers=set(),
                              rounding=rounding, seed=args.seed)
        trainer_factory()(max_steps=settings.steps, max_epochs=-1, enable_checkpointing=False).fit(module)
        refined = rebuilt(model, {name: codes.values() for name, codes in rounding.codes(coded).items()})
        print(f"| {code_lr:g} | {top1(refined, *images['heldout']):.4f} | {top1(refined, *images['test']):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
