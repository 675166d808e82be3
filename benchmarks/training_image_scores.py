"""Score compressed CIFAR ResNet artifacts on the 10,000 CIFAR-10 training images of ../shared, for choosing
settings without the test split.

The compressors are data-free and never see these images, so all 10,000 can judge a setting (the 1,000 held out
by the data module resolve about a point of top-1; a quarter of a point needs more). Each artifact is rebuilt with
`big2small.load` from its file and the model's checkpoint alone. Per artifact it prints top-1, the cross-entropy
to the labels (nll), the share of images where it predicts what the uncompressed model predicts (agree), and the
mean KL divergence from the uncompressed model's softmax to its own (kl); then, per setting (the artifacts given
as NAME=PATH with the same NAME), the mean and sd of each.

    OMP_NUM_THREADS=2 python benchmarks/training_image_scores.py --model resnet20 \\
        light=outputs/a/compressed.safetensors light=outputs/b/compressed.safetensors \\
        whole=outputs/c/compressed.safetensors
"""

from __future__ import annotations

import argparse
import statistics

import torch
from big2small_common import CIFAR_CHECKPOINTS, cifar10, cifar_resnet

from big2small.api import load

MEASURES = ("top1", "nll", "agree", "kl")


def training_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 10,000 training images of ../shared (the data module's training split and its held-out part)."""
    data = cifar10()
    parts = [data.splits[name].tensors for name in ("train", "heldout")]
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])


def logits_of(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(chunk) for chunk in images.split(1000)])


def scores(logits: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """The MEASURES of `logits` against the labels and the uncompressed model's `reference` logits."""
    wanted = reference.log_softmax(dim=1)
    got = logits.log_softmax(dim=1)
    return {"top1": float((logits.argmax(dim=1) == labels).float().mean()),
            "nll": float(torch.nn.functional.cross_entropy(logits, labels)),
            "agree": float((logits.argmax(dim=1) == reference.argmax(dim=1)).float().mean()),
            "kl": float((wanted.exp() * (wanted - got)).sum(dim=1).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(CIFAR_CHECKPOINTS), default="resnet20")
    parser.add_argument("artifacts", nargs="+", help="NAME=PATH: an artifact of setting NAME")
    args = parser.parse_args()
    groups: dict[str, list[str]] = {}
    for artifact in args.artifacts:
        name, _, path = artifact.partition("=")
        if not path:
            parser.error(f"an artifact is given as NAME=PATH (got {artifact!r})")
        groups.setdefault(name, []).append(path)
    images, labels = training_images()
    model = cifar_resnet(args.model)
    reference = logits_of(model, images)
    print(f"{len(labels)} training images; uncompressed top1 {scores(reference, reference, labels)['top1']:.4f}")
    summary = {}
    for name, paths in groups.items():
        rows = []
        for path in paths:
            rows.append(scores(logits_of(load(path, model), images), reference, labels))
            print(f"{name:>12} {path}: " + "  ".join(f"{m} {rows[-1][m]:.4f}" for m in MEASURES), flush=True)
        summary[name] = rows
    print("\nsetting       n  " + "  ".join(f"{m:>17}" for m in MEASURES))
    for name, rows in summary.items():
        cells = []
        for measure in MEASURES:
            values = [row[measure] for row in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
        print(f"{name:>12} {len(rows):2d}  " + "  ".join(f"{cell:>17}" for cell in cells))


if __name__ == "__main__":
    main()
