"""How fast entropy-coded artifacts decode: MB of fp32 weights rebuilt per second, on one CPU thread.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/decode_speed.py --model resnet50 --ratio 8

Compresses torchvision's ResNet-50 architecture (random weights drawn from a Laplace distribution, as trained
weights roughly are; the weights' values do not change how a stream decodes, only its length) with `quant` at the
target ratio, entropy-coded, writes the artifact and times, best of --repeats: the rANS decoding of every layer's
stream alone, and the whole rebuild from the file (read, checks, decode, dequantise, into the model). Prints MB of
fp32 replaced weights per second for each, and the same rebuild with entropy_coding=false for comparison.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import torch
import torchvision

from big2small.codec import read_artifact, write_artifact
from big2small.encodings.entropy_codes import rans_decode
from big2small.methods import code_streams
from big2small.methods.quant import UniformQuantizer
from big2small.pipeline import rebuild_from_artifact


def best_seconds(action, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--ratio", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                parameter.copy_(torch.distributions.Laplace(0.0, 0.02).sample(parameter.shape))
    with tempfile.TemporaryDirectory() as scratch:
        for entropy_coding in (True, False):
            compressed = UniformQuantizer(target_ratio=args.ratio, entropy_coding=entropy_coding).compress(
                copy.deepcopy(model))
            path = Path(scratch) / f"{entropy_coding}.safetensors"
            size = write_artifact(compressed, path)
            weights = sum(math.prod(layer["shape"]) for layer in compressed.meta["layers"])
            megabytes = 4 * weights / 1e6
            label = "coded" if entropy_coding else "packed"
            if entropy_coding:
                stored = read_artifact(path)
                seconds = best_seconds(lambda stored=stored: _decode_streams(stored), args.repeats)
                print(f"{args.model}: {weights:,} weights ({megabytes:.1f} MB fp32), artifact {size:,} bytes "
                      f"({4 * weights / size:.2f}x)")
                print(f"rANS decoding alone: {seconds:.3f} s, {megabytes / seconds:.1f} MB/s")
            seconds = best_seconds(lambda path=path: rebuild_from_artifact(path, model), args.repeats)
            print(f"whole rebuild from the file, {label}: {seconds:.3f} s, {megabytes / seconds:.1f} MB/s")


def _decode_streams(stored) -> None:
    offset = 0
    for layer in stored.meta["layers"]:
        count = math.prod(layer["shape"])
        size = code_streams.stored_bytes(layer, math.ceil(count * layer["bits"] / 8))
        if layer.get("coding") == "rans":
            rans_decode(stored.tensors["codes"][offset:offset + size], 2 ** layer["bits"] - 1, count)
        offset += size


if __name__ == "__main__":
    main()
