"""What the default's synthetic inputs and refinement steps buy on ResNet-20: fit seconds against top-1.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/refinement_budget.py --ratios 8 16 \
        --budgets 256,100,600 128,50,300 [--seed 0] [--model resnet20|resnet32]

Each budget is `num_inputs,input_steps,steps` of the refinement group (synthetic inputs made, their optimisation
steps, refinement steps); every other setting is Big2SmallCompressor's default. Prints one markdown row per
(ratio, budget): measured ratio, fit seconds and their phases, held-out top-1 (1,000 training images held out,
the only figure a choice may look at) and test top-1 (2,000 test images, 200 per class).
"""

from __future__ import annotations

import argparse

from big2small_common import fit_and_rebuild, harness, top1

PHASES = ("inr_prediction", "weight_fitting", "codec_choice", "input_synthesis", "compensation", "refinement")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", type=float, nargs="+", default=[8, 16])
    parser.add_argument("--budgets", nargs="+", default=["256,100,600", "128,50,300"])
    args, model, images = harness(parser)
    print("| ratio | inputs, input steps, refinement steps | measured ratio | fit s | " + " | ".join(PHASES) +
          " | held-out top-1 | test top-1 |")
    print("|---|---|---|---|" + "---|" * len(PHASES) + "---|---|", flush=True)
    for ratio in args.ratios:
        for budget in args.budgets:
            inputs, input_steps, steps = (int(v) for v in budget.split(","))
            result = fit_and_rebuild(model, target_ratio=ratio, seed=args.seed, input_shape=[3, 32, 32],
                                     refinement={"num_inputs": inputs, "input_steps": input_steps, "steps": steps})
            phases = result["compressed"].phase_seconds
            print(f"| {ratio:g} | {inputs}, {input_steps}, {steps} | {result['ratio']:.2f} | "
                  f"{result['fit_seconds']:.0f} | " + " | ".join(f"{phases[p]:.0f}" if p in phases else "-"
                                                                for p in PHASES) +
                  f" | {top1(result['rebuilt'], *images['heldout']):.4f} | "
                  f"{top1(result['rebuilt'], *images['test']):.4f} |", flush=True)


if __name__ == "__main__":
    main()
