"""The artifact of an unstructured pruning compressor (`magnitude`, `lq_prune`): kept values + coded positions.

Tensors: `values` (every kept weight, fp32, layer after layer) and `index` (each layer's mask coded by
sparse_storage, bytes concatenated). The header lists per layer its name, shape, coding width and code count,
which is all that `rebuild_pruned` needs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings.bitpack import packed_size
from big2small.encodings.sparse_masks import BITMAP, MAX_GAP_BITS, cheapest_coding, decode_mask, encode_mask
from big2small.graph.weights import set_parameter
from big2small.methods.base import Compressor
from big2small.methods.budget import artifact_bytes, original_bytes, report_landing
from big2small.methods.header import Field


class PrunedWeightsCompressor(Compressor):
    """What the pruning compressors share: their artifact layout, its header and its rebuild."""

    ARTIFACT_TENSORS = {"values": torch.float32, "index": torch.uint8}
    META_FIELDS = {}
    LAYER_FIELDS = {"bits": Field(BITMAP, MAX_GAP_BITS), "count": Field(0)}  # mask coding width, code count

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, int | range]:
        layers = meta["layers"]
        # How many weights are kept is only known once the masks are decoded: at most all of them.
        return {"index": sum(packed_size(layer["count"], 1 if layer["bits"] == BITMAP else layer["bits"])
                             for layer in layers),
                "values": range(sum(math.prod(layer["shape"]) for layer in layers) + 1)}

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        return rebuild_pruned(compressed, model)


def pruned_artifact(compressor, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                    why_not_closer: str) -> Compressed:
    """The artifact of `compressor` keeping weights[n][masks[n]], with its per-layer rows; warns (saying
    `why_not_closer`) when the measured ratio misses the compressor's target_ratio by more than 5 %."""
    compressed = pack_pruned(compressor.name, compressor.settings(), weights, masks)
    compressed.layer_stats = mask_stats(masks)
    report_landing(compressor.name, original_bytes(weights) / artifact_bytes(compressed), compressor.target_ratio,
                   why_not_closer)
    return compressed


def pack_pruned(name: str, settings: dict, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                sizing_only: bool = False) -> Compressed:
    """The artifact keeping weights[n][masks[n]]. With sizing_only, payloads are zeros of the final sizes."""
    values, index, layers = [], [], []
    for layer, weight in weights.items():
        mask = masks[layer].reshape(-1)
        kept = int(mask.sum())
        if sizing_only:
            bits, count, size = cheapest_coding(mask)
            values.append(torch.zeros(kept))
            index.append(torch.zeros(size, dtype=torch.uint8))
        else:
            encoded = encode_mask(mask)
            bits, count = encoded.bits, encoded.count
            values.append(weight.reshape(-1)[mask].float())
            index.append(encoded.packed)
        layers.append({"name": layer, "shape": list(weight.shape), "bits": bits, "count": count})
    tensors = {"values": torch.cat(values), "index": torch.cat(index)}
    return Compressed(name, settings, tensors, {"replaced": list(weights), "layers": layers})


def rebuild_pruned(compressed: Compressed, model: nn.Module) -> nn.Module:
    values, index = compressed.tensors["values"], compressed.tensors["index"]
    value_offset = byte_offset = 0
    for layer in compressed.meta["layers"]:
        shape, bits, count = layer["shape"], int(layer["bits"]), int(layer["count"])
        size = packed_size(count, 1 if bits == BITMAP else bits)
        mask = decode_mask(index[byte_offset : byte_offset + size], bits, count, math.prod(shape))
        kept = int(mask.sum())
        weight = torch.zeros(math.prod(shape))
        weight[mask] = values[value_offset : value_offset + kept].float()
        set_parameter(model, layer["name"], weight.reshape(shape))
        value_offset, byte_offset = value_offset + kept, byte_offset + size
    if value_offset != values.numel() or byte_offset != index.numel():
        raise ValueError(f"{compressed.compressor} artifact: payload size does not match its layer list")
    return model


def mask_stats(masks: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Per-layer diagnostics for the results table."""
    stats = {}
    for name, mask in masks.items():
        bits, _, size = cheapest_coding(mask.reshape(-1))
        stats[name] = {"kept_fraction": float(mask.float().mean()), "index_coding":
                       "bitmap" if bits == BITMAP else f"gaps{bits}", "index_bytes": size}
    return stats
