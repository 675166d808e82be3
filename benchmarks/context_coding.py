"""What coding each kernel's codes under the context of its earlier codes (encodings/context_codes.py) saves over
one static model per layer, at every code option of a CIFAR ResNet, and how fast the context coder decodes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/context_coding.py [--model resnet20|resnet32] [--speed]

Every conv and linear weight Big2Small replaces is coded at each width and rate level with dead zones searched, as
the codec choice offers them (nearest codes, before refinement). Bytes are the codes alone, summed over the layers:
`static` is WeightCodes.stored_size(True) (the rANS stream or the packed codes, the smaller), `context` is
stored_size(True, True) (the context-coded stream where it is smaller still; codes of at most
context_codes.MAX_ALPHABET symbols only), and the time each took to size every option is printed. --speed also times decoding the codes
of torchvision's ResNet-50 (random weights, 3-bit codes at rate level 2, 26 M weights) with each coder, best of
three, in MB of fp32 weights per second.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torchvision
from big2small_common import CIFAR_CHECKPOINTS, cifar_resnet, setup

from big2small.encodings.context_codes import MAX_ALPHABET, context_decode, context_encode
from big2small.encodings.entropy_codes import rans_decode, rans_encode
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.layer_codes import (
    DEAD_ZONES,
    RATE_LEVELS,
    TERNARY,
    code_limit,
    weight_codes_at_levels,
)

WIDTHS = (TERNARY, 3, 4, 5, 6, 8)
SPEED_BITS, SPEED_LEVEL, REPEATS = 3, 2, 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20", choices=sorted(CIFAR_CHECKPOINTS))
    parser.add_argument("--speed", action="store_true", help="also time decoding ResNet-50's codes")
    args = parser.parse_args()
    setup()
    weights = Big2SmallCompressor().select(cifar_resnet(args.model))
    count = sum(w.numel() for w in weights.values())
    levels = list(range(RATE_LEVELS + 1))
    print(f"{args.model}: {len(weights)} layers, {count} weights; codes' bytes summed over the layers\n")
    print("| codes | rate level | static bytes | context bytes | saved | static bits/weight | context bits/weight |")
    print("|---|---|---|---|---|---|---|")
    seconds = {"static": 0.0, "context": 0.0}
    for bits in WIDTHS:
        static = dict.fromkeys(levels, 0)
        context = dict.fromkeys(levels, 0)
        for weight in weights.values():
            for level, coded in weight_codes_at_levels(weight, bits, levels, DEAD_ZONES).items():
                start = time.perf_counter()
                static[level] += coded.stored_size(True)[1]
                middle = time.perf_counter()
                context[level] += coded.stored_size(True, True)[1]
                seconds["static"] += middle - start
                seconds["context"] += time.perf_counter() - middle
        for level in levels:
            name = "ternary" if bits == TERNARY else f"{bits}-bit"
            print(f"| {name} | {level} | {static[level]} | {context[level]} | "
                  f"{100 * (1 - context[level] / static[level]):.1f} % | {8 * static[level] / count:.3f} | "
                  f"{8 * context[level] / count:.3f} |")
    print(f"\nsizing all {len(WIDTHS) * len(levels) * len(weights)} options: static {seconds['static']:.2f} s, "
          f"with context coding {seconds['context']:.2f} s (codes of at most {MAX_ALPHABET} symbols are offered it)")
    if args.speed:
        decode_speed()


def decode_speed() -> None:
    model = torchvision.models.resnet50(weights=None)
    weights = Big2SmallCompressor().select(model)
    layers = []
    for weight in weights.values():
        coded = weight_codes_at_levels(weight, SPEED_BITS, [SPEED_LEVEL], DEAD_ZONES)[SPEED_LEVEL]
        symbols, alphabet, zero = coded.symbols(), coded.alphabet(), code_limit(SPEED_BITS)
        layers.append((symbols, alphabet, zero, coded.kernel(), rans_encode(symbols, alphabet),
                       context_encode(symbols, alphabet, zero, coded.kernel())))
    count = sum(layer[0].numel() for layer in layers)
    megabytes = 4 * count / 1e6
    coders = {
        "static rANS": lambda s, a, z, k, static, context: rans_decode(static, a, s.numel()),
        "context": lambda s, a, z, k, static, context: context_decode(context, a, s.numel(), z, k),
    }
    print(f"\nResNet-50 (random weights), {len(layers)} layers, {count} weights, {SPEED_BITS}-bit codes at rate level "
          f"{SPEED_LEVEL}: decoding, best of {REPEATS}")
    for name, decode in coders.items():
        stream_bytes = sum((layer[4] if name == "static rANS" else layer[5]).numel() for layer in layers)
        best = math.inf
        for _ in range(REPEATS):
            start = time.perf_counter()
            for layer in layers:
                decoded = decode(*layer)
            best = min(best, time.perf_counter() - start)
        assert torch.equal(decoded, layers[-1][0].reshape(-1))
        print(f"{name}: {stream_bytes} bytes, {best:.2f} s, {megabytes / best:.1f} MB of fp32 weights per second")


if __name__ == "__main__":
    main()
