"""Can a data-free score pick the better of several compressions of one setting? Fresh synthetic inputs as judge.

    OMP_NUM_THREADS=2 python benchmarks/synthetic_validation.py --model resnet20 [--inputs 512] [--seed 777] \\
        light=outputs/a/compressed.safetensors light=outputs/b/compressed.safetensors \\
        whole=outputs/c/compressed.safetensors

Each artifact (NAME=PATH; artifacts of one setting share a NAME, one per seed) is rebuilt with `big2small.load` from
its file and the model's checkpoint. It is scored by the KL divergence from the uncompressed model's softmax on
`--inputs` synthetic inputs made as the refinement makes its own (synthesis.synthetic_inputs with the default
refinement settings, seed `--seed`, which no compression run uses), plain (`syn_kl`) and mixed in pairs as coarse
plans see them (`mix_kl`); on all 10,000 CIFAR-10 training images (`train_kl`, the measure settings are chosen on,
as benchmarks/training_image_scores.py); and by top-1 on the full test split (`test`). It prints each artifact's
scores, the Pearson correlation of each synthetic score with `train_kl` and `test` over all artifacts and within
settings (each score less its setting's mean), and what picking, in each setting of two or more artifacts, the one
of lowest `mix_kl` gains on `test` over the setting's mean: what restarting a compression K times and keeping the
restart a data-free judge prefers would be worth.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch
from big2small_common import CIFAR_CHECKPOINTS, cifar10, cifar_resnet, setup, trainer_factory
from training_image_scores import logits_of, scores, training_images

from big2small.api import load
from big2small.graph.weights import frozen_copy
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import synthetic_inputs
from big2small.methods.big2small.views import mixed_inputs

SCORES = ("syn_kl", "mix_kl", "train_kl", "test")


def kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    return scores(logits, reference, reference.argmax(dim=1))["kl"]


def pearson(a: list[float], b: list[float]) -> float:
    return statistics.correlation(a, b) if len(a) > 2 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(CIFAR_CHECKPOINTS), default="resnet20")
    parser.add_argument("--inputs", type=int, default=512)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("artifacts", nargs="+", help="NAME=PATH: an artifact of setting NAME")
    args = parser.parse_args()
    setup()
    model = cifar_resnet(args.model)
    settings = dataclasses.replace(RefinementSettings(), num_inputs=args.inputs)
    synthetic = synthetic_inputs(frozen_copy(model), [3, 32, 32], settings, args.seed, trainer_factory())
    judged = {"syn_kl": synthetic, "mix_kl": mixed_inputs(synthetic, torch.Generator().manual_seed(args.seed))}
    train_x, train_y = training_images()
    test_x, test_y = cifar10().splits["test"].tensors
    references = {key: logits_of(model, images) for key, images in {**judged, "train_kl": train_x}.items()}
    rows: list[dict] = []
    for artifact in args.artifacts:
        name, _, path = artifact.partition("=")
        if not path:
            parser.error(f"an artifact is given as NAME=PATH (got {artifact!r})")
        rebuilt = load(path, model)
        row = {"name": name, **{key: kl(references[key], logits_of(rebuilt, images)) for key, images in judged.items()}}
        row["train_kl"] = kl(references["train_kl"], logits_of(rebuilt, train_x))
        row["test"] = float((logits_of(rebuilt, test_x).argmax(dim=1) == test_y).float().mean())
        rows.append(row)
        print(f"{name:>12} {path}: " + "  ".join(f"{key} {row[key]:.4f}" for key in SCORES), flush=True)
    settings_rows: dict[str, list[dict]] = {}
    for row in rows:
        settings_rows.setdefault(row["name"], []).append(row)
    repeated = [group for group in settings_rows.values() if len(group) > 1]
    within = {key: [row[key] - statistics.mean(r[key] for r in group) for group in repeated for row in group]
              for key in SCORES}
    print(f"\n{len(rows)} artifacts, {len(repeated)} settings with two or more")
    for key in ("syn_kl", "mix_kl"):
        for against in ("train_kl", "test"):
            print(f"{key} against {against}: pearson {pearson([r[key] for r in rows], [r[against] for r in rows]):+.3f} "
                  f"over all, {pearson(within[key], within[against]):+.3f} within settings")
    gains = [min(group, key=lambda r: r["mix_kl"])["test"] - statistics.mean(r["test"] for r in group)
             for group in repeated]
    if gains:
        print(f"keeping each setting's artifact of lowest mix_kl: test top-1 {100 * statistics.mean(gains):+.2f} points "
              f"over the setting's mean (per setting: {', '.join(f'{100 * g:+.2f}' for g in gains)})")


if __name__ == "__main__":
    main()
