"""Per-layer weight error of a Big2Small run against quant at the same target ratio, on ResNet-20.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/layer_errors.py <job dir or metrics.json of a ResNet-20 run>

Reads the run's `layers` rows (relative error ||W_rebuilt - W|| / ||W|| and how each layer is stored), compresses
the shared ResNet-20 with `quant` at the run's `target_ratio` (its mixed-bit allocation picks the bits per layer)
and prints one markdown row per layer: weights, the run's error and storage (INR width or code bits), quant's error
and bits. Shows
where, per layer, an INR's bytes buy less than codes do.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

from big2small_common import resnet20, setup

import big2small
from big2small.methods.registry import rebuild
from big2small.rebuilding import layer_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path, help="a ResNet-20 run's job dir or its metrics.json")
    args = parser.parse_args()
    setup()
    path = args.run / "metrics.json" if args.run.is_dir() else args.run
    metrics = json.loads(path.read_text())
    model = resnet20()
    quant = big2small.compress(model, "quant", target_ratio=metrics["target_ratio"])
    quant_errors = {row["layer"]: row["relative_error"]
                    for row in layer_table(model, rebuild(quant, copy.deepcopy(model)), quant.meta["replaced"])}
    quant_bits = {layer["name"]: layer.get("bits") for layer in quant.meta["layers"]}
    name = metrics.get("compressor_config", metrics["compressor"])
    print(f"{path}: {name} at {metrics['compression_ratio']:.2f}x; quant at {metrics['target_ratio']:g}x")
    print(f"| layer | weights | {name} rel. error | stored as | quant rel. error | quant bits |")
    print("|---|---|---|---|---|---|")
    rows = metrics["layers"]
    for row in rows:
        layer = row["layer"]
        print(f"| {layer} | {row['params']} | {row['relative_error']:.3f} | {stored_as(row)} | "
              f"{quant_errors[layer]:.3f} | {quant_bits.get(layer)} |")
    print(f"| mean | | {statistics.fmean(r['relative_error'] for r in rows):.3f} | | "
          f"{statistics.fmean(quant_errors[r['layer']] for r in rows):.3f} | |")


def stored_as(row: dict) -> str:
    if row.get("stored_as") == "codes":
        return f"{row['code_bits']}-bit codes"
    if row.get("inr_width"):
        return f"INR, width {row['inr_width']}"
    return row.get("stored_as", "-")


if __name__ == "__main__":
    main()
