"""The seed baselines against their papers' headline effects, in the closest setting a 2-core CPU allows.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_baselines.py id_prune
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_baselines.py lq_prune
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/seed_baselines.py smooth --epochs 8 --pilot-epochs 2

- `id_prune` (Chee et al., NeurIPS 2022): top-1 before any fine-tuning against the whole model's parameter and
  FLOP reduction (10-60 %) on the pretrained ResNet-20 and ResNet-32, next to `magnitude` at the same reduction
  of parameters (FLOPs, parameters and the artifact's bytes ratio are all printed). Calibration images are the
  first --calibration images of train_10k; the reduction is steered by id_prune's `budget` option.
- `lq_prune` (arXiv 2206.05604): its per-neuron rule against plain (layer-wise) magnitude pruning at equal kept
  weights (lq_prune is fitted first, magnitude then keeps the same number of weights per layer) on ResNet-20/32.
- `smooth` (arXiv 2505.24469): ResNet-20 trained from scratch on train_10k less 1,000 held-out images, plainly
  and with the nuclear and the second-difference penalties (the project's ClassificationTask, same recipe and
  epochs for all), then `svd` at 1.5, 2, 3 and 4x with both rank rules. The penalty strength is chosen among
  --strengths by short pilot trainings (--pilot-epochs), scored on the 1,000 held-out images (svd energy rule at
  3x); never on test images. Trained models are cached under outputs/benchmarks/seed_baselines/.

Top-1 is always taken on the same fixed 2,000 test images (the first 200 of each class). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from big2small.base_model import base_model_cache_key, obtain_base_model
from big2small.checkpoints import load_checkpoint
from big2small.codec import Compressed
from big2small.data.cifar10 import Cifar10DataModule
from big2small.logs import quiet_library_logs
from big2small.methods.id_prune import InterpolativePruning, model_flops, output_positions
from big2small.methods.lq_prune import LqPruning
from big2small.methods.magnitude import MagnitudePruning
from big2small.methods.registry import rebuild
from big2small.methods.svd import SVDCompressor
from big2small.models.cifar_resnet import CifarResNet
from big2small.tasks.classification import ClassificationTask
from big2small.tasks.weight_penalties import SmoothnessPenalty

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHECKPOINTS = {20: SHARED / "models/cifar10/resnet20-12fca82f.th", 32: SHARED / "models/cifar10/resnet32-d509ac18.th"}
CACHE = ROOT / "outputs/benchmarks/seed_baselines"
TEST_IMAGES = 2000


# ------------------------------------------------------------------ shared pieces
def cifar10(heldout: int = 0, augment: bool = False) -> Cifar10DataModule:
    data = Cifar10DataModule(root=str(SHARED / "data/cifar10"), heldout_size=heldout, augment=augment)
    data.setup("fit")
    return data


def test_subset(data: Cifar10DataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed 2,000 test images: the first 200 of each class (test.npz is sorted by class)."""
    images, labels = data.splits["test"].tensors
    per_class = TEST_IMAGES // 10
    chosen = torch.cat([(labels == c).nonzero().reshape(-1)[:per_class] for c in range(10)])
    return images[chosen], labels[chosen]


def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(500)])
    return float((predictions == labels).float().mean())


def pretrained(depth: int) -> nn.Module:
    return load_checkpoint(CifarResNet(depth=depth), CHECKPOINTS[depth], trusted_pickle=True).eval()


def compress(compressor, model: nn.Module, data=None) -> dict:
    """Fit on a copy, serialise, rebuild from the bytes alone; the bytes ratio is the file's."""
    started = time.perf_counter()
    compressed = compressor.fit(copy.deepcopy(model), data=data if compressor.uses_data else None)
    seconds = time.perf_counter() - started
    blob = compressed.to_bytes()
    rebuilt = rebuild(Compressed.from_bytes(blob), copy.deepcopy(model)).eval()
    replaced = sum(model.get_parameter(n).numel() for n in compressed.meta["replaced"])
    return {"rebuilt": rebuilt, "compressed": compressed, "ratio": 4 * replaced / len(blob), "seconds": seconds}


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nonzero_parameters(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def setup() -> None:
    for depth, path in CHECKPOINTS.items():
        if not path.is_file():
            sys.exit(f"needs {path} (the shared ResNet-{depth} checkpoint)")
    quiet_library_logs()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


# ------------------------------------------------------------------ smooth training + svd
def make_trainer(**overrides) -> L.Trainer:
    settings = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, deterministic=True,
                    default_root_dir=str(CACHE / "lightning"))
    settings.update(overrides)
    return L.Trainer(**settings)


def trained_resnet20(data: Cifar10DataModule, epochs: int, penalty: SmoothnessPenalty | None, seed: int) -> tuple:
    """ResNet-20 from scratch through the pipeline's own base-model path (cached by its training settings)."""
    task = ClassificationTask(epochs=epochs, lr=3e-3, weight_decay=1e-4, weight_penalty=penalty)
    net_config = {"model": "CifarResNet", "depth": 20}
    data_config = {"name": "cifar10", "train": "train_10k.npz", "heldout_size": data.heldout_size,
                   "augment": data.augment, "batch_size": data.batch_size, "split_seed": data.split_seed}
    key = base_model_cache_key(net_config, data_config, seed, task)
    started = time.perf_counter()
    model, source = obtain_base_model(CifarResNet(depth=20), checkpoint=None, trusted_pickle=False, task=task,
                                      data=data, make_trainer=make_trainer, cache_dir=CACHE / "models",
                                      cache_key=key, seed=seed)
    return model.eval(), source, time.perf_counter() - started


def run_smooth(args) -> None:
    data = cifar10(heldout=1000, augment=True)
    test_x, test_y = test_subset(data)
    held_x, held_y = data.splits["heldout"].tensors
    print(f"ResNet-20 from scratch on {len(data.splits['train'])} train_10k images (1,000 held out), "
          f"top-1 on {len(test_y)} test images; {args.epochs} epochs, AdamW lr 3e-3, wd 1e-4, batch 128, "
          "crop+flip, cosine", flush=True)

    def heldout_score(model) -> float:
        return top1(compress(SVDCompressor(rank_rule="energy", target_ratio=3.0), model)["rebuilt"], held_x, held_y)

    # 1. strength per penalty, chosen on held-out images after short pilot trainings.
    chosen = {}
    print(f"\nStrength choice (pilots of {args.pilot_epochs} epochs; held-out top-1 of the base and of svd energy 3x):")
    print("| penalty | strength | held-out base | held-out svd 3x | train s |")
    print("|---|---|---|---|---|", flush=True)
    for kind in args.penalties:
        best = None
        for strength in args.strengths:
            model, source, seconds = trained_resnet20(data, args.pilot_epochs, SmoothnessPenalty(kind, strength),
                                                      args.seed)
            score = heldout_score(model)
            trained = f"{seconds:.0f}" if source.startswith("trained") else "cached"
            print(f"| {kind} | {strength:g} | {top1(model, held_x, held_y):.4f} | {score:.4f} | {trained} |",
                  flush=True)
            if best is None or score > best[0]:
                best = (score, strength)
        chosen[kind] = best[1]
    print("chosen:", chosen, flush=True)

    # 2. full trainings with the same recipe, then svd at each ratio.
    variants = [("plain", None)] + [(f"{k}, λ={chosen[k]:g}", SmoothnessPenalty(k, chosen[k])) for k in args.penalties]
    print(f"\nsvd after plain and smooth training ({args.epochs} epochs each); test top-1 on {len(test_y)} images "
          "(measured bytes ratio in brackets):")
    header = " | ".join(f"{rule} {r:g}x" for rule in ("uniform", "energy") for r in args.ratios)
    print(f"| training | train s | held-out base | test base | {header} |")
    print("|---" * (4 + 2 * len(args.ratios)) + "|", flush=True)
    for name, penalty in variants:
        model, source, seconds = trained_resnet20(data, args.epochs, penalty, args.seed)
        cells = []
        for rule in ("uniform", "energy"):
            for ratio in args.ratios:
                result = compress(SVDCompressor(rank_rule=rule, target_ratio=ratio), model)
                cells.append(f"{top1(result['rebuilt'], test_x, test_y):.4f} ({result['ratio']:.2f}x)")
        trained = f"{seconds:.0f}" if source.startswith("trained") else "cached"
        print(f"| {name} | {trained} | {top1(model, held_x, held_y):.4f} | {top1(model, test_x, test_y):.4f} | "
              + " | ".join(cells) + " |", flush=True)


# ------------------------------------------------------------------ id_prune against magnitude
def flops_and_params(model: nn.Module, example: torch.Tensor, nonzero: bool = False) -> tuple[int, int]:
    """(conv+linear multiply-accumulates for one image, parameters); nonzero: count only non-zero weights (the
    MACs a sparse kernel would do, and the parameters a sparse format keeps)."""
    if not nonzero:
        return model_flops(model, example), parameters(model)
    positions = output_positions(model, example)
    macs = sum(int((model.get_submodule(path).weight != 0).sum()) * count for path, count in positions.items())
    return macs, nonzero_parameters(model)


def id_rows(name: str, model: nn.Module, data, images, labels, args) -> None:
    example = images[:1]
    flops, params = flops_and_params(model, example)
    base = top1(model, images, labels)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    print(f"\n{name}: {params:,} parameters, {flops / 1e6:.1f} M MACs, uncompressed top-1 {base:.4f} "
          f"on {len(labels)} test images; id_prune calibrates on the first {args.calibration} train_10k images")
    print("| method | budget | target | params -% | FLOPs -% | bytes ratio | top-1 | drop | fit s |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)

    def row(method, budget, target, result, nonzero):
        f, p = flops_and_params(result["rebuilt"], example, nonzero)
        accuracy = top1(result["rebuilt"], images, labels)
        print(f"| {method} | {budget} | {100 * target:.0f} % | {100 * (1 - p / params):.1f} | "
              f"{100 * (1 - f / flops):.1f} | {result['ratio']:.2f} | {accuracy:.4f} | {base - accuracy:+.4f} | "
              f"{result['seconds']:.1f} |", flush=True)

    for budget in ("params", "flops"):
        for reduction in args.reductions:
            compressor = InterpolativePruning(budget=budget, target_ratio=1 / (1 - reduction),
                                              calibration_images=args.calibration)
            row("id_prune", budget, reduction, compress(compressor, model, data), nonzero=False)
    for reduction in args.reductions:  # the same number of parameters removed, as unstructured zeros
        for mode in ("layerwise", "global"):
            sparsity = min(1.0, reduction * params / weights)
            row(f"magnitude {mode}", "params", reduction,
                compress(MagnitudePruning(sparsity=sparsity, mode=mode), model), nonzero=True)
    for budget in args.recalibrate:
        compressor = InterpolativePruning(budget=budget, target_ratio=1 / (1 - args.recalibrate_at),
                                          calibration_images=args.calibration, recalibrate=True)
        row("id_prune recalibrated", budget, args.recalibrate_at, compress(compressor, model, data), nonzero=False)


def run_id_prune(args) -> None:
    data = cifar10()
    images, labels = test_subset(data)
    for depth in args.depths:
        id_rows(f"ResNet-{depth} (pretrained checkpoint)", pretrained(depth), data, images, labels, args)


# ------------------------------------------------------------------ lq_prune against magnitude
def run_lq_prune(args) -> None:
    data = cifar10()
    images, labels = test_subset(data)
    for depth in args.depths:
        model = pretrained(depth)
        print(f"\nResNet-{depth}: uncompressed top-1 {top1(model, images, labels):.4f} on {len(labels)} test images; "
              "kept = non-zero conv+linear weights")
        print("| lq_prune setting | method | kept weights | kept % | bytes ratio | top-1 |")
        print("|---|---|---|---|---|---|", flush=True)
        weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        settings = [{"eta": eta} for eta in args.etas] + [{"target_ratio": r} for r in args.ratios]
        for setting in settings:
            label = ", ".join(f"{k} {v:g}" for k, v in setting.items())
            lq = compress(LqPruning(**setting), model)
            kept = kept_weights(lq["rebuilt"])
            results = [("lq_prune", lq)] + [
                (f"magnitude {mode}", compress(MagnitudePruning(sparsity=1 - kept / weights, mode=mode), model))
                for mode in ("layerwise", "global")]
            for method, result in results:
                count = kept_weights(result["rebuilt"])
                print(f"| {label} | {method} | {count:,} | {100 * count / weights:.1f} | {result['ratio']:.2f} | "
                      f"{top1(result['rebuilt'], images, labels):.4f} |", flush=True)


def kept_weights(model: nn.Module) -> int:
    return sum(int((m.weight != 0).sum()) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


# ------------------------------------------------------------------ an over-parameterised VGG-style net
def vgg(widths=(64, 64, "M", 128, 128, "M", 256, 256, "M")) -> nn.Sequential:
    layers, channels = [], 3
    for width in widths:
        if width == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


def run_vgg(args) -> None:
    train = cifar10(heldout=1000, augment=True)
    task = ClassificationTask(epochs=args.epochs, lr=3e-3, weight_decay=1e-4)
    key = base_model_cache_key({"model": "vgg", "widths": args.widths}, {"name": "cifar10", "heldout": 1000}, 0, task)
    widths = [w if w == "M" else int(w) for w in args.widths]
    started = time.perf_counter()
    model, source = obtain_base_model(vgg(widths), checkpoint=None, trusted_pickle=False, task=task, data=train,
                                      make_trainer=make_trainer, cache_dir=CACHE / "models", cache_key=key, seed=0)
    print(f"VGG-style {args.widths}: {source.split(':')[0]} in {time.perf_counter() - started:.0f} s "
          f"({args.epochs} epochs on 9,000 train_10k images)", flush=True)
    data = cifar10()
    images, labels = test_subset(data)
    id_rows(f"VGG-style {'-'.join(map(str, args.widths))}", model.eval(), data, images, labels, args)


# ------------------------------------------------------------------ command line
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    smooth = sub.add_parser("smooth", help="svd on a plainly and a smoothly trained ResNet-20")
    smooth.add_argument("--epochs", type=int, default=8)
    smooth.add_argument("--pilot-epochs", type=int, default=2)
    smooth.add_argument("--penalties", nargs="+", default=["nuclear", "second_difference"])
    smooth.add_argument("--strengths", type=float, nargs="+", default=[1e-3, 1e-2])
    smooth.add_argument("--ratios", type=float, nargs="+", default=[1.5, 2, 3, 4])
    smooth.add_argument("--seed", type=int, default=0)
    reductions = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    for name, helptext in (("id_prune", "id_prune against magnitude on the pretrained ResNets"),
                           ("vgg", "id_prune against magnitude on a VGG-style net trained here")):
        command = sub.add_parser(name, help=helptext)
        command.add_argument("--reductions", type=float, nargs="*", default=reductions)
        command.add_argument("--calibration", type=int, default=1000)
        command.add_argument("--recalibrate", nargs="*", default=[], choices=["params", "flops"],
                             help="also run the iterative (recalibrated) id_prune for these budgets")
        command.add_argument("--recalibrate-at", type=float, default=0.3)
        if name == "id_prune":
            command.add_argument("--depths", type=int, nargs="+", default=[20, 32])
        else:
            command.add_argument("--epochs", type=int, default=4)
            command.add_argument("--widths", nargs="+", default=["48", "48", "M", "96", "96", "M", "192", "192", "M"])
    lq = sub.add_parser("lq_prune", help="lq_prune against magnitude at equal kept weights")
    lq.add_argument("--depths", type=int, nargs="+", default=[20, 32])
    lq.add_argument("--etas", type=float, nargs="+", default=[0.1, 1.0, 3.0])
    lq.add_argument("--ratios", type=float, nargs="+", default=[2.0, 4.0])
    args = parser.parse_args()
    setup()
    {"smooth": run_smooth, "id_prune": run_id_prune, "lq_prune": run_lq_prune, "vgg": run_vgg}[args.command](args)


if __name__ == "__main__":
    main()
