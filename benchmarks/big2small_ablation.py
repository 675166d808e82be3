"""Ablation of Big2Small on ResNet-20 at one ratio: outliers x frequency loss x permutation x refinement.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big2small_ablation.py --ratio 4 --steps 500

Refinement uses the compressor's settings (its class defaults) unless --refine-steps or --refine-lr
say otherwise. Prints a markdown table: one row per combination (16, or 6 with --design one-at-a-time), with the measured ratio, the mean per-layer relative
reconstruction error, top-1 on 1,000 held-out training images (the number to choose by) and on 2,000 test
images (200 per class) (reported, never chosen on).
"""

from __future__ import annotations

import argparse
import itertools

from big2small_common import fit_and_rebuild, image_sets, mean_relative_error, resnet20, setup, top1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratio", type=float, default=8)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--refine-steps", type=int, default=None, help="default: the compressor's refinement.steps")
    parser.add_argument("--refine-lr", type=float, default=None, help="default: the compressor's refinement.lr")
    parser.add_argument("--inr-kind", choices=["siren", "fourier"], default=None, help="default: the compressor's")
    parser.add_argument("--refinement", choices=["both", "on", "off"], default="both",
                        help="only the rows with refinement on (or off), e.g. to run the halves on two cores")
    parser.add_argument("--bits", type=int, default=16, help="INR storage: 16 (fp16) or 8 (int8 + QAT steps)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the INR initialisation, sampling and inputs")
    parser.add_argument("--design", choices=["full", "one-at-a-time"], default="full",
                        help="full: all 16 combinations; one-at-a-time: all off, each alone on, all on (6 rows)")
    args = parser.parse_args()
    setup()
    model, images = resnet20(), image_sets()
    print(f"ResNet-20 at target ratio {args.ratio:g}, seed {args.seed}, {args.bits}-bit INR {args.inr_kind or 'default'}, {args.steps} fitting steps, "
          f"{args.refine_steps or 'default'} refinement steps (lr {args.refine_lr or 'default'}); base top-1: held-out {top1(model, *images['heldout']):.4f}, test {top1(model, *images['test']):.4f}",
          flush=True)
    print("| outliers | freq. loss | permutation | refinement | ratio | mean rel. error | held-out top-1 | test top-1 |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    if args.design == "full":
        combinations = list(itertools.product([False, True], repeat=4))
    else:
        combinations = [tuple(i == k for i in range(4)) for k in range(-1, 4)] + [(True,) * 4]
    if args.refinement != "both":
        combinations = [c for c in combinations if c[3] == (args.refinement == "on")]
    for outliers, frequency, permute, refine in combinations:
        result = fit_and_rebuild(
            model, target_ratio=args.ratio, fit={"steps": args.steps}, input_shape=[3, 32, 32], seed=args.seed,
            storage={"bits": args.bits},
            inr={"kind": args.inr_kind} if args.inr_kind else {},
            outliers={"enabled": outliers}, loss={"frequency_weight": 0.1 if frequency else 0.0},
            permutation={"enabled": permute},
            refinement={"enabled": refine, **({"steps": args.refine_steps} if args.refine_steps else {}),
                        **({"lr": args.refine_lr} if args.refine_lr is not None else {})})
        rebuilt = result["rebuilt"]
        mark = {True: "on", False: "off"}
        print(f"| {mark[outliers]} | {mark[frequency]} | {mark[permute]} | {mark[refine]} | {result['ratio']:.2f} | "
              f"{mean_relative_error(model, result):.3f} | {top1(rebuilt, *images['heldout']):.4f} | "
              f"{top1(rebuilt, *images['test']):.4f} |", flush=True)


if __name__ == "__main__":
    main()
