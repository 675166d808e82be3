"""Bits per weight against relative weight error, per layer and for the whole model, next to the Gaussian bound.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rate_distortion.py --ratios 8 16 32 \
        --compressors quant kmeans big2small --checkpoint ../shared/models/cifar10/resnet20-12fca82f.th

For every (compressor, target ratio) the model is compressed through the run configs (`conf/compressor/*`), the
artifact written to disk and the model rebuilt from the file alone. For each replaced layer with n weights of
variance s2, rebuilt with mean squared error D, the Gaussian rate-distortion bound is R(D) = max(0, 1/2 log2(s2/D))
bits per weight: no code of a memoryless Gaussian source of that variance reaches distortion D in fewer bits, and
for the heavier-tailed weights of a trained network the true bound lies below it. A layer's bits are its share of
the artifact where the header states it (codes and their scales or codebook: quant, kmeans, Big2Small layers stored
as codes), else "-"; the model row's bits are the whole artifact's (header included) over all replaced weights.
Big2Small runs without refinement unless --refine, since refinement trades weight error for output error.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
from pathlib import Path

import torch
from big2small_common import trainer_factory
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from big2small.checkpoints import load_checkpoint
from big2small.codec import write_artifact
from big2small.config_store import register_compressor_defaults
from big2small.encodings.bitpack import packed_size
from big2small.methods import code_streams
from big2small.methods.big2small.layer_codes import packed_codes_size
from big2small.methods.big2small.scale_grid import scale_bytes
from big2small.methods.kmeans import CENTROID_BYTES, index_bits
from big2small.pipeline import rebuild_from_artifact

CONF = Path(__file__).resolve().parents[1] / "conf"


def layer_bytes(compressor: str, meta: dict) -> dict[str, int]:
    """Bytes of each layer whose share of the payload the header states."""
    sizes = {}
    for layer in meta["layers"]:
        count, channels = math.prod(layer["shape"]), layer["shape"][0]
        if compressor == "quant":
            sizes[layer["name"]] = code_streams.stored_bytes(layer, packed_size(count, layer["bits"])) + 2 * channels
        elif compressor == "kmeans":
            packed = packed_size(count, index_bits(layer["centroids"]))
            sizes[layer["name"]] = code_streams.stored_bytes(layer, packed) + CENTROID_BYTES * layer["centroids"]
        elif compressor == "big2small" and layer["name"] in meta["code_bits"]:
            packed = packed_codes_size(count, meta["code_bits"][layer["name"]])
            sizes[layer["name"]] = (layer.get("code_bytes", packed)
                                    + scale_bytes(channels, meta.get("log_scales", False)))
    return sizes


def gaussian_bound(variance: float, distortion: float) -> float:
    """R(D) of a memoryless Gaussian source, bits per sample."""
    return max(0.0, 0.5 * math.log2(variance / distortion)) if distortion > 0 else math.inf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default="../shared/models/cifar10/resnet20-12fca82f.th")
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--ratios", type=float, nargs="+", default=[8, 16, 32])
    parser.add_argument("--compressors", nargs="+", default=["quant", "kmeans", "big2small"])
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run, e.g. compressor.entropy_coding=false")
    parser.add_argument("--refine", action="store_true", help="keep Big2Small's refinement on")
    parser.add_argument("--per-layer", action="store_true", help="print every layer, not only the model rows")
    args = parser.parse_args()

    register_compressor_defaults()
    common = ["data=cifar10", f"model={args.model}", "logger=none"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=common)
        configs = {}
        for name in args.compressors:
            extra = [] if name != "big2small" or args.refine else ["compressor.refinement.enabled=false"]
            for ratio in args.ratios:
                configs[(name, ratio)] = compose("config", overrides=[
                    *common, f"compressor={name}", f"compressor.target_ratio={ratio}", *extra, *args.set])
    base = load_checkpoint(instantiate(cfg.model.net, _convert_="all"), args.checkpoint, trusted_pickle=True).eval()
    print("| compressor | target | layer | weights | bits/weight | rel. error | Gaussian R(D) bits/weight |")
    print("|---|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for (name, ratio), job_cfg in configs.items():
            compressor = instantiate(job_cfg.compressor, _convert_="all")
            torch.manual_seed(0)
            compressed = compressor.compress(copy.deepcopy(base), trainer_factory=trainer_factory(scratch))
            path = Path(scratch) / f"{name}-{ratio}.safetensors"
            size = write_artifact(compressed, path)
            rebuilt = rebuild_from_artifact(path, base)
            shares = layer_bytes(name, compressed.meta)
            total_weights = total_bound = total_error = total_energy = 0.0
            for layer in compressed.meta["replaced"]:
                weight = base.get_parameter(layer).detach().float()
                error = float(((rebuilt.get_parameter(layer).detach() - weight) ** 2).sum())
                energy = float((weight ** 2).sum())
                bound = gaussian_bound(float(weight.var()), error / weight.numel())
                total_weights, total_bound = total_weights + weight.numel(), total_bound + bound * weight.numel()
                total_error, total_energy = total_error + error, total_energy + energy
                if args.per_layer:
                    bits = f"{8 * shares[layer] / weight.numel():.3f}" if layer in shares else "-"
                    print(f"| {name} | {ratio:g} | {layer} | {weight.numel()} | {bits} | "
                          f"{math.sqrt(error / energy):.4f} | {bound:.3f} |")
            print(f"| {name} | {ratio:g} | **model** | {int(total_weights)} | {8 * size / total_weights:.3f} | "
                  f"{math.sqrt(total_error / total_energy):.4f} | {total_bound / total_weights:.3f} |", flush=True)


if __name__ == "__main__":
    main()
