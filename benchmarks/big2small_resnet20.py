"""Big2Small on the pretrained CIFAR-10 ResNet-20 at several target ratios: speed, memory and top-1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big2small_resnet20.py --steps 1500 --ratios 4 8 12 16

Prints one markdown row per ratio: measured ratio, fit seconds (and their split into allocation, weight fitting,
input synthesis and refinement), fitting steps per second, process peak RSS, decode seconds, layers stored as INRs
(by their storage bits) and as codes, top-1 before and after on 2,000 test images (200 per class) and on 1,000
held-out training images.
Default compressor settings (Big2SmallCompressor's) except steps, learning rate, storage bits (16 unless --bits),
small layers as codes (none unless --codes-below), the number of Fourier frequencies and refinement (off unless
--refine), which are options here: without them a row is the paper's method. Any other compressor setting is
`--set GROUP.KEY=VALUE` (e.g. `--set refinement.views=flip_shift refinement.input_steps=50`). With --refine the
fit seconds include the synthetic inputs and the refinement, and steps/s is left out ("-").
"""

from __future__ import annotations

import argparse
from collections import Counter

import yaml
from big2small_common import (
    cifar10,
    fit_and_rebuild,
    image_sets,
    mean_relative_error,
    peak_rss_mb,
    resnet20,
    setup,
    top1,
)

PHASES = ("allocation", "weight_fitting", "codec_choice", "input_synthesis", "compensation", "refinement")  # Big2Small's phase_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", type=float, nargs="+", default=[4, 8, 12, 16])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=None, help="default: the compressor's fit.lr")
    parser.add_argument("--bits", type=int, default=16, help="INR storage: 16 (fp16), or 8, 6, 4 (codes + QAT steps)")
    parser.add_argument("--qat-steps", type=int, default=None, help="default: the compressor's storage.qat_steps")
    parser.add_argument("--codes-below", type=int, default=0,
                        help="storage.codes_below: layers with fewer weights stored as 8-bit codes (0: none)")
    parser.add_argument("--layer-choice", choices=["inr", "lower_error"], default="inr",
                        help="storage.layer_choice; inr (the paper's: every layer keeps its INR) unless given")
    parser.add_argument("--choice-error", choices=["squared", "layer_relative", "channel_relative", "output"], default=None,
                        help="storage.choice_error: the weight error the layer choice minimises; default: the compressor's")
    parser.add_argument("--inr-kind", choices=["siren", "fourier"], default=None, help="default: the compressor's")
    parser.add_argument("--frequencies", type=int, default=None,
                        help="Fourier frequencies of the INR input encoding; default: the compressor's")
    parser.add_argument("--seed", type=int, default=0, help="seeds the INR initialisation, sampling and inputs")
    parser.add_argument("--refine", action="store_true", help="data-free refinement with the compressor's settings")
    parser.add_argument("--refine-steps", type=int, default=None, help="default: the compressor's refinement.steps")
    parser.add_argument("--refine-inputs", type=int, default=None, help="default: the compressor's num_inputs")
    parser.add_argument("--refine-lr", type=float, default=None, help="default: the compressor's refinement.lr")
    parser.add_argument("--code-lr", type=float, default=None, help="default: the compressor's refinement.code_lr")
    parser.add_argument("--class-weight", type=float, default=None,
                        help="synthetic inputs' cross-entropy to assigned classes; default: the compressor's")
    parser.add_argument("--refine-source", choices=["bn_stats", "noise", "data"], default=None,
                        help="refinement inputs; data: real training images (not held out), the run then uses data")
    parser.add_argument("--set", nargs="+", default=[], metavar="GROUP.KEY=VALUE",
                        help="any other compressor setting, e.g. refinement.input_steps=25 (value read as YAML)")
    args = parser.parse_args()
    setup()
    model, images = resnet20(), image_sets()
    base_test, base_held = top1(model, *images["test"]), top1(model, *images["heldout"])
    fit = {"steps": args.steps, **({"lr": args.lr} if args.lr is not None else {})}
    inr = {"frequencies": args.frequencies} if args.frequencies is not None else {}
    inr |= {"kind": args.inr_kind} if args.inr_kind else {}
    refinement = {"enabled": args.refine}
    storage = {"bits": args.bits, "codes_below": args.codes_below, "layer_choice": args.layer_choice,
               **({"qat_steps": args.qat_steps} if args.qat_steps is not None else {}),
               **({"choice_error": args.choice_error} if args.choice_error else {})}
    for key, value in (("steps", args.refine_steps), ("num_inputs", args.refine_inputs), ("lr", args.refine_lr), ("code_lr", args.code_lr),
                       ("inputs", args.refine_source),
                       ("class_weight", args.class_weight)):
        if value is not None:
            refinement[key] = value
    groups = {"fit": fit, "inr": inr, "storage": storage, "refinement": refinement, "permutation": {},
              "outliers": {}, "loss": {}}
    for assignment in args.set:
        path, _, value = assignment.partition("=")
        group, _, key = path.partition(".")
        if group not in groups or not key or not value:
            parser.error(f"--set {assignment}: expected one of {sorted(groups)}.KEY=VALUE")
        groups[group][key] = yaml.safe_load(value)
    print(f"ResNet-20, {args.steps} fitting steps, {groups}, seed {args.seed}, "
          f"otherwise default "
          f"big2small settings; base top-1: test {base_test:.4f}, "
          f"held-out {base_held:.4f}", flush=True)
    print("| target | measured ratio | bytes | fit s | " + " / ".join(p.replace("_", " ") for p in PHASES) + " s "
          "| steps/s | peak RSS MB | decode s | layers INR / codes | mean rel. error | test top-1 before -> after "
          "| held-out top-1 after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for ratio in args.ratios:
        result = fit_and_rebuild(model, data=cifar10() if args.refine_source == "data" else None, target_ratio=ratio,
                                 **groups, input_shape=[3, 32, 32], seed=args.seed)
        rebuilt = result["rebuilt"]
        speed = "-" if args.refine else f"{args.steps / result['fit_seconds']:.1f}"
        phases = result["compressed"].phase_seconds
        split = " / ".join(f"{phases.get(name, 0.0):.1f}" for name in PHASES)
        rows = result["compressed"].layer_stats.values()
        stored = [row["stored_as"] for row in rows]
        inr_bits = Counter(row["inr_bits"] for row in rows if row["stored_as"] == "inr")
        by_bits = f" ({', '.join(f'{count} at {bits} bits' for bits, count in sorted(inr_bits.items()))})" \
            if inr_bits else ""
        print(f"| {ratio:g} | {result['ratio']:.2f} | {result['bytes']} | {result['fit_seconds']:.1f} | {split} | "
              f"{speed} | {peak_rss_mb():.0f} | {result['decode_seconds']:.3f} | "
              f"{stored.count('inr')}{by_bits} / {stored.count('codes')} | "
              f"{mean_relative_error(model, result):.3f} | "
              f"{base_test:.4f} -> {top1(rebuilt, *images['test']):.4f} | {top1(rebuilt, *images['heldout']):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
