"""Big2Small on the pretrained CIFAR-10 ResNet-20 at several target ratios: speed, memory and top-1.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/big2small_resnet20.py --steps 1500 --ratios 4 8 12 16

Prints one markdown row per ratio: measured ratio, fit seconds, fitting steps per second, process peak RSS,
decode seconds, top-1 before and after on 2,000 test images (200 per class) and on 1,000 held-out training
images.
Default compressor settings (conf/compressor/big2small.yaml) except steps, learning rate and storage bits.
"""

from __future__ import annotations

import argparse

from big2small_common import fit_and_rebuild, image_sets, peak_rss_mb, resnet20, setup, top1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", type=float, nargs="+", default=[4, 8, 12, 16])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bits", type=int, default=16, help="INR storage: 16 (fp16) or 8 (int8 + QAT steps)")
    args = parser.parse_args()
    setup()
    model, images = resnet20(), image_sets()
    base_test, base_held = top1(model, *images["test"]), top1(model, *images["heldout"])
    print(f"ResNet-20, {args.steps} fitting steps, lr {args.lr:g}, {args.bits}-bit INRs, otherwise default "
          f"big2small settings; base top-1: test {base_test:.4f}, "
          f"held-out {base_held:.4f}", flush=True)
    print("| target | measured ratio | bytes | fit s | steps/s | peak RSS MB | decode s | test top-1 before -> after "
          "| held-out top-1 after |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for ratio in args.ratios:
        result = fit_and_rebuild(model, target_ratio=ratio, fit={"steps": args.steps, "lr": args.lr},
                                 storage={"bits": args.bits})
        rebuilt = result["rebuilt"]
        print(f"| {ratio:g} | {result['ratio']:.2f} | {result['bytes']} | {result['fit_seconds']:.1f} | "
              f"{args.steps / result['fit_seconds']:.1f} | {peak_rss_mb():.0f} | {result['decode_seconds']:.3f} | "
              f"{base_test:.4f} -> {top1(rebuilt, *images['test']):.4f} | {top1(rebuilt, *images['heldout']):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
