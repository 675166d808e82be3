"""Baseline compressors on the pretrained CIFAR-10 ResNet-20: measured ratio and top-1 per (compressor, target).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/baselines_resnet20.py \
        --data-root ../shared/data/cifar10 --checkpoint ../shared/models/cifar10/resnet20-12fca82f.th

The same configs and code path as `src/train.py -m compressor=... compressor.target_ratio=...` (hydra compose,
compressor.fit, artifact written to disk and the model rebuilt from the file alone), but the base model and data
are loaded once and top-1 is taken on --test-images test images (a seeded random subset, the same for every
row), so that the whole table costs minutes on a CPU. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from big2small.checkpoints import load_checkpoint
from big2small.codec import write_artifact
from big2small.config_store import register_compressor_defaults
from big2small.pipeline import rebuild_from_artifact

CONF = Path(__file__).resolve().parents[1] / "conf"


def top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch):
            correct += int((model(images[start : start + batch]).argmax(1) == labels[start : start + batch]).sum())
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", default="../shared/data/cifar10")
    parser.add_argument("--checkpoint", default="../shared/models/cifar10/resnet20-12fca82f.th")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--ratios", type=float, nargs="+", default=[2, 4, 8])
    parser.add_argument("--compressors", nargs="+",
                        default=["quant", "kmeans", "magnitude", "lq_prune", "svd", "id_prune", "hyper"])
    args = parser.parse_args()

    common = ["data=cifar10", f"data.root={args.data_root}", "model=cifar_resnet20", "logger=none"]
    register_compressor_defaults()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=common)
        configs = {(name, ratio): compose("config", overrides=[*common, f"compressor={name}",
                                                                f"compressor.target_ratio={ratio}"])
                   for name in args.compressors for ratio in args.ratios}
    data = instantiate(cfg.data, _convert_="all")
    data.setup()
    base = load_checkpoint(instantiate(cfg.model.net, _convert_="all"), args.checkpoint, trusted_pickle=True).eval()
    # A seeded random subset: the test file is sorted by class, so its first images would be two classes only.
    subset = torch.randperm(len(data.splits["test"]), generator=torch.Generator().manual_seed(0))[: args.test_images]
    images, labels = (t[subset] for t in data.splits["test"].tensors)
    params = dict(base.named_parameters())
    total = sum(p.numel() for p in params.values())
    base_top1 = top1(base, images, labels)
    print(f"ResNet-20, {len(labels)} test images (seeded random subset); uncompressed top-1 {base_top1:.4f}", flush=True)
    print("| compressor | uses data | target | ratio | model ratio | top-1 | drop | fit s |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for (name, ratio), job_cfg in configs.items():
            compressor = instantiate(job_cfg.compressor, _convert_="all")
            torch.manual_seed(0)
            started = time.perf_counter()
            compressed = compressor.fit(copy.deepcopy(base), data=data if compressor.uses_data else None)
            fit_seconds = time.perf_counter() - started
            path = Path(scratch) / f"{name}-{ratio}.safetensors"
            size = write_artifact(compressed, path)
            rebuilt = rebuild_from_artifact(path, base)
            replaced = sum(params[n].numel() for n in compressed.meta["replaced"])
            accuracy = top1(rebuilt, images, labels)
            print(f"| {name} | {'yes' if compressor.uses_data else 'no'} | {ratio:g} | {4 * replaced / size:.2f} | "
                  f"{4 * total / (size + 4 * (total - replaced)):.2f} | {accuracy:.4f} | {base_top1 - accuracy:+.4f} | "
                  f"{fit_seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
