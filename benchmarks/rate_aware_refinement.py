"""What pricing code moves in coded bits buys: the rate-aware refinement against choosing again, on a CIFAR ResNet.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rate_aware_refinement.py --ratios 16 32 \
        --variants false,0.02 true,0.005 [--seed 0] [--model resnet20|resnet32]

For each ratio and variant `rate_aware,code_reserve` of the refinement group, Big2SmallCompressor's default run with
those two settings: `rate_aware` false (refined codes over the target are met by choosing again and refining anew,
compressor.py) or true (each code move paid for in bits, code_rate.py), the codec choice leaving `code_reserve` of
the target's bytes to the refined codes. Prints one markdown row per run: measured ratio, how many refinements ran, fit and refinement
seconds, held-out top-1 (1,000 training images held out, the only figure a choice may look at) and test top-1 (2,000
test images, 200 per class).
"""

from __future__ import annotations

import argparse
import logging

from big2small_common import fit_and_rebuild, harness, top1


class Counter(logging.Handler):
    """Counts the compressor's "choosing again" records: each is one more refinement."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "choosing again" in record.getMessage()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ratios", type=float, nargs="+", default=[16, 32])
    parser.add_argument("--variants", nargs="+", default=["false,0.02", "true,0.005"])
    args, model, images = harness(parser)
    logger = logging.getLogger("big2small.methods.big2small.compressor")
    logger.setLevel(logging.INFO)
    print("| ratio | rate_aware | code_reserve | measured ratio | refinements | fit s | refinement s | held-out top-1 | test top-1 |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for ratio in args.ratios:
        for variant in args.variants:
            aware, reserve = variant.split(",")
            rate_aware, code_reserve = aware == "true", float(reserve)
            counter = Counter()
            logger.addHandler(counter)
            result = fit_and_rebuild(model, target_ratio=ratio, seed=args.seed, input_shape=[3, 32, 32],
                                     refinement={"rate_aware": rate_aware, "code_reserve": code_reserve})
            logger.removeHandler(counter)
            phases = result["compressed"].phase_seconds
            print(f"| {ratio:g} | {aware} | {code_reserve:g} | {result['ratio']:.2f} | {1 + counter.count} | "
                  f"{result['fit_seconds']:.0f} | {phases['refinement']:.0f} | "
                  f"{top1(result['rebuilt'], *images['heldout']):.4f} | {top1(result['rebuilt'], *images['test']):.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
