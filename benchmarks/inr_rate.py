"""Where an INR earns its bytes: every layer's fitted INR against its weights' best codes at no more bytes.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inr_rate.py [--model resnet20|resnet32] [--ratios 8,16,32,64]
        [--steps 1000]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inr_rate.py --model membrane_unet --checkpoint FILE

`membrane_unet` is the default U-Net (`model=unet`, layers of up to 147,456 weights: four times ResNet-20's
largest) trained on the membrane images; FILE is the base model a run trained and cached, named by its
metrics.json `base_model_source` (`python src/train.py task=segmentation data=membrane
data.root=../shared/data/membrane compressor=none logger=none seed=0`).

For each target ratio, Big2Small's default plan (8-bit INRs, entropy-coded codes at 3 rate levels) is fitted with
every INR run for all its steps (`fit.inrs: all`, no screening, no refinement: the codec choice is made on the
weights alone, as in the default). Printed per layer: weights, the INR's bits per weight (its parameters,
outliers and statistics), its error and the error of the best codes of no more bytes (each the squared error over
the layer's energy), their ratio, and what the codec choice stored. A ratio below 1 is a layer where the INR is
the better code at its bytes; the last table gives per ratio the least of those ratios over the layers and how
many layers the choice kept as INRs.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from big2small_common import CIFAR_CHECKPOINTS, cifar_resnet, setup, trainer_factory
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from big2small.checkpoints import load_checkpoint
from big2small.config_store import register_compressor_defaults
from big2small.errors import ConfigError
from big2small.methods.big2small.codec_choice import is_inr_option
from big2small.methods.big2small.compressor import Big2SmallCompressor


class Recording(Big2SmallCompressor):
    """The default compressor that keeps what its codec choice saw: every option and the plan it chose."""

    def _choose_codecs(self, plan, inr_error, candidates, stored):
        chosen = super()._choose_codecs(plan, inr_error, candidates, stored)
        self.seen = (plan, inr_error, candidates, stored, chosen)
        return chosen


def layer_rows(compressor: Recording) -> list[dict]:
    from big2small.methods.big2small.codec_choice import target_inr_bytes

    plan, inr_error, candidates, stored, chosen = compressor.seen
    rows = []
    for target in plan.targets:
        if target.key not in candidates:
            continue
        energy = sum(float((plan.weights[s.name] ** 2).sum()) for s in target.segments)
        count = sum(plan.weights[s.name].numel() for s in target.segments)
        for bits, width in candidates[target.key].items():
            size = target_inr_bytes(plan, compressor.inr, bits, width, target)
            codes = [error for option, (b, error) in stored[target.key].items() if b <= size
                     and not is_inr_option(option)]
            best_codes = min(codes) / energy if codes else math.inf
            inr = inr_error[target.key][bits] / energy
            width_chosen = chosen.widths[target.key]
            stored_as = "inr" if width_chosen and width_chosen > 0 else "fp16" if width_chosen is None else \
                f"codes {chosen.code_bits[target.key]}b r{chosen.code_rates.get(target.key, 0)}"
            rows.append({"layer": target.key, "weights": count, "bits_per_weight": 8 * size / count,
                         "inr": inr, "codes": best_codes, "inr_over_codes": inr / best_codes,
                         "stored_as": stored_as, "kept": stored_as == "inr" and chosen.inr_bits[target.key] == bits})
    return rows


def membrane_unet(checkpoint: str):
    """The default U-Net of the membrane task with the trained weights in `checkpoint`."""
    register_compressor_defaults()
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["task=segmentation", "data=membrane", "model=unet"])
    return load_checkpoint(instantiate(cfg.model.net, _convert_="all"), checkpoint, trusted_pickle=False).eval()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20", choices=[*sorted(CIFAR_CHECKPOINTS), "membrane_unet"])
    parser.add_argument("--checkpoint", help="the trained membrane_unet's weights (a .safetensors file)")
    parser.add_argument("--ratios", default="8,16,32,64")
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    if args.model == "membrane_unet":
        if not args.checkpoint:
            parser.error("--model membrane_unet needs --checkpoint (see the docstring)")
        model, input_shape = membrane_unet(args.checkpoint), [1, 96, 96]
    else:
        setup()
        model, input_shape = cifar_resnet(args.model), [3, 32, 32]
    summary = []
    for ratio in [float(r) for r in args.ratios.split(",")]:
        compressor = Recording(target_ratio=ratio, fit={"steps": args.steps, "inrs": "all", "screen_at": 0.0},
                               refinement={"enabled": False}, input_shape=input_shape)
        started = time.perf_counter()
        try:
            compressor.fit(model, trainer_factory=trainer_factory())
        except ConfigError as error:  # a ratio the model cannot reach
            print(f"\n{args.model} at {ratio:g}x: {error}")
            continue
        seconds = time.perf_counter() - started
        rows = layer_rows(compressor)
        print(f"\n{args.model} at {ratio:g}x ({seconds:.0f} s, {args.steps} fitting steps)\n")
        print("| layer | weights | INR bits/weight | INR error | best codes error at <= its bytes | INR / codes "
              "| stored as |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['layer']} | {r['weights']} | {r['bits_per_weight']:.3f} | {r['inr']:.4f} | "
                  f"{r['codes']:.4f} | {r['inr_over_codes']:.3f} | {r['stored_as']} |")
        summary.append((ratio, min(r["inr_over_codes"] for r in rows),
                        sum(r["kept"] for r in rows), len(rows)))
    print(f"\n{args.model}: per ratio, the least INR / codes error ratio over the layers, and the INRs kept\n")
    print("| target ratio | least INR / codes | layers kept as INR |")
    print("|---|---|---|")
    for ratio, least, kept, total in summary:
        print(f"| {ratio:g} | {least:.3f} | {kept}/{total} |")


if __name__ == "__main__":
    main()
