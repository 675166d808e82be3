"""What dead-zone rounding adds to a layer's code options: bits per weight and relative squared weight error of every
code width of up to DEAD_ZONE_MAX_BITS at every rate level, with nearest rounding and with the dead zones searched.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dead_zone_codes.py [--model resnet20|resnet32] [--layers a,b,...]

Bytes are the layer's stored codes (`WeightCodes.stored_size(True)`: the rANS stream or the packed codes, the
smaller) + 2 bytes of fp16 scale per output channel; error is ||W_hat - W||^2 / ||W||^2. The last column of each
model row is the fewest bits per weight any option reaches.
"""

from __future__ import annotations

import argparse

from big2small_common import CIFAR_CHECKPOINTS, cifar_resnet, setup

from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.layer_codes import (
    DEAD_ZONE_MAX_BITS,
    DEAD_ZONES,
    NEAREST,
    RATE_LEVELS,
    TERNARY,
    code_limit,
    weight_codes_at_levels,
)

FP16_SCALE_BYTES = 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20", choices=sorted(CIFAR_CHECKPOINTS))
    parser.add_argument("--layers", default="layer1.0.conv1.weight,layer2.1.conv2.weight,layer3.1.conv1.weight")
    args = parser.parse_args()
    setup()
    weights = Big2SmallCompressor().select(cifar_resnet(args.model))
    levels = list(range(RATE_LEVELS + 1))
    widths = (TERNARY, *range(3, DEAD_ZONE_MAX_BITS + 1))
    print(f"{args.model}: bits per weight / relative squared error at rate levels {levels}; dead zones {DEAD_ZONES}\n")
    print("| layer | weights | codes | rounding | " + " | ".join(f"level {level}" for level in levels)
          + " | fewest bits/weight |")
    print("|---|---|---|---|" + "---|" * (len(levels) + 1))
    for name in args.layers.split(","):
        weight = weights[name]
        count, energy = weight.numel(), float((weight ** 2).sum())
        for bits in widths:
            for label, zones in (("nearest", (NEAREST,)), ("dead zone", DEAD_ZONES)):
                cells, fewest = [], float("inf")
                for coded in weight_codes_at_levels(weight, bits, levels, zones).values():
                    rate = 8 * (coded.stored_size(True)[1] + FP16_SCALE_BYTES * weight.shape[0]) / count
                    fewest = min(fewest, rate)
                    cells.append(f"{rate:.2f} / {float(((coded.values() - weight) ** 2).sum()) / energy:.3f}")
                codes = "ternary" if bits == TERNARY else f"{bits}-bit (|q| <= {code_limit(bits)})"
                print(f"| {name} | {count} | {codes} | {label} | " + " | ".join(cells) + f" | {fewest:.2f} |")


if __name__ == "__main__":
    main()
