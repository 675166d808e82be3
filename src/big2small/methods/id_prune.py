"""`id_prune`: interpolative-decomposition channel pruning (Chee et al., NeurIPS 2022), no fine-tuning.

Uses data: unlabelled calibration images from the training split (`data.calibration_images`), never the test
split. For every prunable pair (channel_graph.py: a layer whose channels reach exactly one next layer through
BN / activation / pooling), Z = the next layer's input on the calibration images, as a matrix (N*H*W rows x C
channels). A column-pivoted QR of Z gives pivots P and R; keeping the first k pivots, the interpolation matrix
T = [I_k, R11^-1 R12] (columns put back in channel order) gives Z ~ Z[:, kept] T. The pruned layer keeps only
those k output channels (and BN entries), and T is folded into the next layer: W_next <- W_next T^T at every
spatial tap. Keeping all channels is exact.

Implementation choice: the pivoted QR of Z is computed as the pivoted Cholesky factorisation of its Gram matrix
Z^T Z (accumulated in float64 over batches). In exact arithmetic both choose the same pivots and the same R;
the Gram matrix is C x C however many pixels there are, so a thousand 32 x 32 images cost no memory. Without
`recalibrate`, all pairs are calibrated on the original model in one pass.

Channel counts: with `target_ratio` (which takes precedence over `keep_fraction`), every layer starts with all
channels and the layer with the smallest error per unit saved is shrunk by `shrink_step` (~5 %) of its channels,
repeatedly, until the target is met. `budget` says what the target divides and in which unit a cut's saving is
counted: `bytes` (default: the artifact against the fp32 weights it replaces), `params` (the whole model's
parameters) or `flops` (the whole model's conv + linear multiply-accumulates per image). `error`: `pivot`
|R_kk / R_00| (default) or `singular` sigma_k / sigma_0 of Z. `recalibrate`: after every cut the activations are
recomputed on the pruned model (the paper's iterative algorithm); off by default, since it costs one calibration
pass per cut. Without a target, each layer keeps round(keep_fraction C), all calibrated on the original model.

Against the paper and its public code (jerry-chee/ModelPreserveCompressionNN):
- per-layer sizes: the code scores |R_kk/R_00| / (FLOPs of the layer + of the next, x 0.1) and stops at a
  whole-model FLOPs target; this module scored per artifact byte. Fixed: `budget: flops` (or `params`).
- the code re-runs the calibration images through the partly pruned model after every cut ("iditer"); this
  module calibrated once. Added as `recalibrate` (off by default: 55x the fit time on ResNet-20 for +3 points at
  2x bytes and -1 point at 30 % fewer FLOPs, docs/results.md).
- its ImageNet code uses |R_kk/R_00|, its CIFAR code sigma_k/sigma_0 of Z: both available (`error`).
- step 5 % (README) or 2 % (main.py); 5,000 calibration images on ImageNet (default here 1,000); ResNets pruned
  inside blocks only, as here; its ratios count FLOPs or parameters, this project's `bytes` counts the file.
- its headline model (VGG-16 on CIFAR-10, 512-channel layers) is far wider than the CIFAR ResNets here.

Artifact: the new weights of every changed layer (fp32), the kept biases and BN affine entries (fp32) and the
kept channel indices (int16); BN running statistics are sliced from the model with those indices (buffers).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings.dtype_bytes import fp32_bytes
from big2small.errors import ConfigError
from big2small.graph.prunable_pairs import PrunablePair, prunable_pairs
from big2small.graph.surgery import build_layer, is_supported, layer_spec, replace_module
from big2small.methods.base import Compressor
from big2small.methods.budget import (
    HEADER_SLACK_BYTES,
    artifact_bytes,
    budget_bytes,
    report_landing,
)
from big2small.methods.header import Field, check_keys, check_payload_sizes
from big2small.methods.registry import register

# Pivoted Cholesky / QR on float64 Gram matrices: a pivot below PIVOT_TOLERANCE x the largest diagonal entry, or
# an R diagonal below RANK_TOLERANCE x its largest, counts as numerically zero (float64 eps is ~2e-16).
PIVOT_TOLERANCE = 1e-14
RANK_TOLERANCE = 1e-12
SMALLEST_SCALE = 1e-300  # keeps the rank test meaningful when every diagonal entry is zero

@dataclass
class Decomposition:
    """Pivoted factorisation of one pair's activations: Z[:, perm] = Q R (and Z's singular values)."""

    perm: torch.Tensor  # (C,) channel order, most independent first
    r: torch.Tensor     # (C, C) upper triangular, float64
    singular: torch.Tensor | None = None  # (C,) singular values of Z, descending (sqrt of the Gram's eigenvalues)

    def interpolation(self, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(kept channel indices, T of shape (keep, C)) with Z ~ Z[:, kept] @ T."""
        channels = self.r.shape[0]
        r11, r12 = self.r[:keep, :keep], self.r[:keep, keep:]
        diagonal = torch.diagonal(r11).abs()
        if keep and bool((diagonal > RANK_TOLERANCE * diagonal.max().clamp_min(SMALLEST_SCALE)).all()):
            coefficients = torch.linalg.solve_triangular(r11, r12, upper=True)
        else:  # activations of rank < keep: dependent kept channels get zero weight in the fit
            coefficients = torch.linalg.pinv(r11) @ r12
        t_permuted = torch.cat([torch.eye(keep, dtype=torch.float64), coefficients], dim=1)
        t = torch.empty(keep, channels, dtype=torch.float64)
        t[:, self.perm] = t_permuted
        return self.perm[:keep].clone(), t

    def dropped_error(self, keep: int, error: str = "pivot") -> float:
        """The error heuristic of keeping `keep` channels: |R_kk / R_00| (pivot: the residual norm of the first
        channel dropped, as the paper's ImageNet code) or sigma_k / sigma_0 of Z (singular: its CIFAR code)."""
        values = torch.diagonal(self.r).abs() if error == "pivot" else self.singular
        if keep >= values.numel() or float(values[0]) == 0.0:
            return 0.0
        return float(values[keep] / values[0])


def pivoted_cholesky(gram: torch.Tensor) -> Decomposition:
    """Greedy diagonal pivoting on Z^T Z: the same pivots and R as Businger-Golub pivoted QR of Z."""
    a = gram.double().clone()
    channels = a.shape[0]
    perm = torch.arange(channels)
    r = torch.zeros(channels, channels, dtype=torch.float64)
    scale = float(torch.diagonal(a).max().clamp_min(0.0)) if channels else 0.0
    singular = torch.linalg.eigvalsh(gram.double()).flip(0).clamp_min(0.0).sqrt() if channels else torch.zeros(0)
    for j in range(channels):
        p = j + int(torch.argmax(torch.diagonal(a)[j:]))
        if p != j:
            a[[j, p]] = a[[p, j]]
            a[:, [j, p]] = a[:, [p, j]]
            r[:j, [j, p]] = r[:j, [p, j]]
            perm[[j, p]] = perm[[p, j]]
        pivot = float(a[j, j])
        if pivot <= PIVOT_TOLERANCE * scale or pivot <= 0.0:
            break  # the remaining channels are (numerically) combinations of the ones before: R rows stay 0
        r[j, j] = math.sqrt(pivot)
        r[j, j + 1 :] = a[j, j + 1 :] / r[j, j]
        a[j + 1 :, j + 1 :] -= torch.outer(r[j, j + 1 :], r[j, j + 1 :])
    return Decomposition(perm, r, singular)


BUDGETS = ("bytes", "params", "flops")
ERRORS = ("pivot", "singular")


@register
class InterpolativePruning(Compressor):
    """Interpolative-decomposition channel pruning (Chee et al. 2022), no fine-tuning. Uses data: unlabelled
    calibration images from the training split, never test.

    keep_fraction: channels kept per prunable layer (used when target_ratio is None); calibration_images: how
    many; batch_size: the calibration forward batch; shrink_step: in the target search a layer shrinks by this
    fraction of its channels per step; budget: what target_ratio divides (bytes: the artifact against the fp32
    weights it replaces; params / flops: the whole model's parameters / conv+linear multiply-accumulates, before
    over after), also the unit in which a shrink's saving is counted; recalibrate: recompute the activations on
    the partly pruned model after every shrink step (the paper's iterative algorithm) instead of once on the
    original; error: the per-layer error heuristic (pivot |R_kk/R_00| or singular sigma_k/sigma_0); min_params:
    producers with fewer weights are not pruned; target_ratio, when set, takes precedence over keep_fraction.
    """
    name = "id_prune"
    ARTIFACT_TENSORS = {"kept": torch.int16, "biases": torch.float32, "weights": torch.float32, "norms": torch.float32}
    uses_data = True

    def __init__(self, keep_fraction: float = 0.5, calibration_images: int = 1000, batch_size: int = 250,
                 shrink_step: float = 0.05, budget: str = "bytes", recalibrate: bool = False, error: str = "pivot",
                 target_ratio=None, layer_types=("conv", "linear"), min_params: int = 0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        if not 0.0 < float(keep_fraction) <= 1.0:
            raise ConfigError(f"id_prune: keep_fraction must lie in (0, 1] (got {keep_fraction})")
        for key, value in (("calibration_images", calibration_images), ("batch_size", batch_size)):
            if int(value) != value or int(value) < 1:
                raise ConfigError(f"id_prune: {key} must be an integer >= 1 (got {value})")
        if not 0.0 < float(shrink_step) < 1.0:
            raise ConfigError(f"id_prune: shrink_step must lie in (0, 1) (got {shrink_step})")
        if budget not in BUDGETS:
            raise ConfigError(f"id_prune: budget must be one of {BUDGETS} (got {budget!r})")
        if not isinstance(recalibrate, bool):
            raise ConfigError(f"id_prune: recalibrate must be true or false (got {recalibrate!r})")
        if error not in ERRORS:
            raise ConfigError(f"id_prune: error must be one of {ERRORS} (got {error!r})")
        self.keep_fraction, self.shrink_step = float(keep_fraction), float(shrink_step)
        self.calibration_images, self.batch_size = int(calibration_images), int(batch_size)
        self.budget, self.recalibrate, self.error = budget, recalibrate, error

    def settings(self) -> dict:
        return {**super().settings(), "keep_fraction": self.keep_fraction, "shrink_step": self.shrink_step,
                "calibration_images": self.calibration_images, "batch_size": self.batch_size,
                "budget": self.budget, "recalibrate": self.recalibrate, "error": self.error}

    # ---------------------------------------------------------------- fitting
    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        if data is None or not hasattr(data, "calibration_images"):
            raise ConfigError("id_prune: needs a data module with calibration_images(n) (unlabelled training images)")
        pairs = prunable_pairs(model, self.min_params)
        if not pairs:
            raise ConfigError("id_prune: the model has no layer whose channels feed exactly one next layer")
        images = data.calibration_images(self.calibration_images)
        if self.target_ratio is not None and self.recalibrate:
            cost, limit = self._cost(model, pairs, images)
            pruned, kept, errors = self._prune_iteratively(model, pairs, images, cost, limit)
        else:
            grams = activation_grams(model, pairs, images, self.batch_size)
            decompositions = {pair.producer: pivoted_cholesky(grams[pair.consumer]) for pair in pairs}
            if self.target_ratio is None:
                keep = {p.producer: max(1, round(self.keep_fraction * p.channels)) for p in pairs}
            else:
                keep = self._keep_for_target(pairs, decompositions, *self._cost(model, pairs, images))
            pruned, kept = copy.deepcopy(model), {}
            for pair in pairs:
                kept[pair.producer], t = decompositions[pair.producer].interpolation(keep[pair.producer])
                _prune_pair(pruned, pair, kept[pair.producer], t)
            errors = {p.producer: decompositions[p.producer].dropped_error(keep[p.producer], self.error)
                      for p in pairs}
        keep = {producer: index.numel() for producer, index in kept.items()}
        compressed = self._pack(model, pairs, keep, (pruned, kept))
        compressed.layer_stats = {
            f"{p.producer}.weight": {"kept_channels": keep[p.producer], "channels": p.channels,
                                     "dropped_error": errors[p.producer]}
            for p in pairs
        }
        original = fp32_bytes(sum(model.get_parameter(n).numel() for n in compressed.meta["replaced"]))
        if self.budget == "bytes":
            ratio = original / artifact_bytes(compressed)
        else:
            cost, _ = self._cost(model, pairs, images)
            ratio = cost({p.producer: p.channels for p in pairs}) / cost(keep)
        report_landing(self.name, ratio, self.target_ratio,
                       "channels come in whole steps and every layer keeps at least one")
        return compressed

    def _cost(self, model, pairs, images) -> tuple:
        """(cost(keep), the most it may be) in the budget's unit: payload bytes, or whole-model params / MACs."""
        full = {p.producer: p.channels for p in pairs}
        if self.budget == "bytes":
            sized = self._pack(model, pairs, full)
            original = fp32_bytes(sum(model.get_parameter(n).numel() for n in sized.meta["replaced"]))
            header = artifact_bytes(sized) - self._payload_bytes(model, pairs, full)
            limit = budget_bytes(original, self.target_ratio) - header - HEADER_SLACK_BYTES
            return (lambda keep: self._payload_bytes(model, pairs, keep)), limit
        if self.budget == "flops":
            per_weight = output_positions(model, images)
            total = model_flops(model, images)
        else:
            per_weight = {path: 1 for path in _changed_modules(pairs)}
            total = sum(p.numel() for p in model.parameters())

        def cost(keep: dict[str, int]) -> int:
            removed = 0
            for path, (out, inp) in _shapes(model, pairs, keep).items():
                weight = model.get_submodule(path).weight
                removed += (weight.numel() - out * inp * math.prod(weight.shape[2:])) * per_weight[path]
            if self.budget == "params":
                for pair in pairs:
                    dropped = pair.channels - keep[pair.producer]
                    removed += dropped * (model.get_submodule(pair.producer).bias is not None)
                    norm = model.get_submodule(pair.norm) if pair.norm else None
                    removed += 2 * dropped * bool(norm is not None and norm.affine)
            return total - removed

        return cost, total / self.target_ratio

    def _shrink(self, pairs, keep, error, cost, limit) -> tuple[str, int] | None:
        """The paper's greedy step: the layer whose next ~shrink_step cut has the smallest error per unit saved."""
        best, best_score, best_keep = None, math.inf, None
        current = cost(keep)
        for pair in pairs:
            k = keep[pair.producer]
            smaller = k - max(1, round(self.shrink_step * k))
            if smaller < 1:
                continue
            saved = current - cost({**keep, pair.producer: smaller})
            score = error(pair.producer, smaller) / max(saved, 1)
            if score < best_score:
                best, best_score, best_keep = pair.producer, score, smaller
        return None if best is None else (best, best_keep)

    def _keep_for_target(self, pairs, decompositions, cost, limit) -> dict[str, int]:
        keep = {p.producer: p.channels for p in pairs}
        while cost(keep) > limit:
            step = self._shrink(pairs, keep, lambda producer, k: decompositions[producer].dropped_error(k, self.error),
                                cost, limit)
            if step is None:
                break  # every layer is down to one channel: report_landing says so
            keep[step[0]] = step[1]
        # The last shrink step may overshoot: give single channels back where they fit, most useful first.
        # (Not budget.greedy_raise: a channel's cost depends on the neighbouring pair's count, so costs are
        # recomputed from the current counts at every step.)
        while True:
            current = cost(keep)
            best, best_priority = None, -math.inf
            for pair in pairs:
                k = keep[pair.producer]
                if k >= pair.channels:
                    continue
                added = cost({**keep, pair.producer: k + 1}) - current
                if current + added > limit:
                    continue
                value = decompositions[pair.producer].dropped_error(k, self.error) / max(added, 1)
                if value > best_priority:
                    best, best_priority = pair.producer, value
            if best is None:
                return keep
            keep[best] += 1

    def _prune_iteratively(self, model, pairs, images, cost, limit):
        """The paper's iterative ID: shrink one layer by ~shrink_step, then recompute every pair's activations on
        the pruned model before the next choice, so that later cuts see (and correct) the earlier ones. The last
        cut only goes as far as the budget needs."""
        pruned = copy.deepcopy(model)
        kept = {p.producer: torch.arange(p.channels) for p in pairs}
        keep = {p.producer: p.channels for p in pairs}
        errors = {p.producer: 0.0 for p in pairs}
        by_producer = {p.producer: p for p in pairs}
        while cost(keep) > limit:
            grams = activation_grams(pruned, pairs, images, self.batch_size)
            decompositions = {p.producer: pivoted_cholesky(grams[p.consumer]) for p in pairs}
            step = self._shrink(pairs, keep, lambda producer, k, d=decompositions: d[producer].dropped_error(
                k, self.error), cost, limit)
            if step is None:
                break
            producer, smaller = step
            while smaller + 1 < keep[producer] and cost({**keep, producer: smaller + 1}) <= limit:
                smaller += 1
            index, t = decompositions[producer].interpolation(smaller)
            _prune_pair(pruned, by_producer[producer], index, t)
            kept[producer] = kept[producer][index]
            keep[producer] = smaller
            errors[producer] = decompositions[producer].dropped_error(smaller, self.error)
        return pruned, kept, errors

    @staticmethod
    def _payload_bytes(model, pairs: list[PrunablePair], keep: dict[str, int]) -> int:
        total = 0
        for path, (out, inp) in _shapes(model, pairs, keep).items():
            total += fp32_bytes(out * inp * math.prod(model.get_submodule(path).weight.shape[2:]))
        for pair in pairs:
            k = keep[pair.producer]
            total += 2 * k  # int16 index
            total += fp32_bytes(k * (model.get_submodule(pair.producer).bias is not None))
            norm = model.get_submodule(pair.norm) if pair.norm else None
            total += 8 * k * bool(norm is not None and norm.affine)
        return total

    # ---------------------------------------------------------------- storage
    def _pack(self, model, pairs, keep, pruned=None) -> Compressed:
        """The artifact of `pruned` = (the pruned model, kept channel indices into the original's outputs); with
        pruned None, an artifact of the right size with zeros (for sizing)."""
        pruned_model, kept = pruned if pruned is not None else (None, {p.producer: torch.arange(keep[p.producer])
                                                                       for p in pairs})
        shapes = _shapes(model, pairs, keep)
        weights, modules, biases, norms, replaced = [], [], [], [], []
        for path in _changed_modules(pairs):
            module = model.get_submodule(path)
            out, inp = shapes[path]
            if pruned_model is None:
                weight = torch.zeros(out, inp, *module.weight.shape[2:])
            else:
                weight = pruned_model.get_submodule(path).weight.detach().float()
            weights.append(weight.reshape(-1))
            modules.append({"path": path, "spec": layer_spec(module), "shape": list(weight.shape)})
            replaced.append(f"{path}.weight")
        source = pruned_model if pruned_model is not None else model
        for pair in pairs:
            producer = source.get_submodule(pair.producer)
            index = slice(None) if pruned_model is not None else kept[pair.producer]
            if producer.bias is not None:
                biases.append(producer.bias.detach().float()[index])
                replaced.append(f"{pair.producer}.bias")
            norm = source.get_submodule(pair.norm) if pair.norm else None
            if norm is not None and norm.affine:
                norms += [norm.weight.detach().float()[index], norm.bias.detach().float()[index]]
                replaced += [f"{pair.norm}.weight", f"{pair.norm}.bias"]
        prunes = []
        for pair in pairs:
            norm = model.get_submodule(pair.norm) if pair.norm else None
            prunes.append({"producer": pair.producer, "consumer": pair.consumer, "keep": keep[pair.producer],
                           "norm": pair.norm, "norm_spec": _norm_spec(norm) if norm is not None else None})
        empty = torch.zeros(0)
        tensors = {
            "weights": torch.cat(weights),
            "biases": torch.cat(biases) if biases else empty,
            "norms": torch.cat(norms) if norms else empty,
            "kept": torch.cat([kept[p.producer] for p in pairs]).to(torch.int16),
        }
        meta = {"replaced": replaced, "modules": modules, "prunes": prunes}
        return Compressed(self.name, self.settings(), tensors, meta)

    @classmethod
    def check_artifact(cls, compressed: Compressed, model: nn.Module) -> None:
        """Its header (`modules`: each changed layer's new shape; `prunes`: each pruned pair and how many channels
        it keeps) fits `model`, and each tensor has the size that header implies, before anything is decoded."""
        super().check_artifact(compressed, model)
        meta = compressed.meta
        check_keys(meta, ["replaced", "modules", "prunes"], "the header")
        if not isinstance(meta["prunes"], list) or not isinstance(meta["modules"], list):
            raise ValueError("prunes and modules must be lists")
        keep, biases, norms = {}, 0, 0
        for index, prune in enumerate(meta["prunes"]):
            where = f"prunes[{index}]"
            check_keys(prune, ["producer", "consumer", "keep", "norm", "norm_spec"], where)
            producer = _supported_layer(model, prune["producer"], f"{where}.producer")
            if prune["producer"] in keep:
                raise ValueError(f"{where}.producer {prune['producer']} is pruned twice")
            Field(1, producer.weight.shape[0]).check(prune["keep"], f"{where}.keep")
            keep[prune["producer"]] = prune["keep"]
            biases += prune["keep"] if producer.bias is not None else 0
            if prune["norm"] is not None:
                norm = _submodule(model, prune["norm"], f"{where}.norm")
                if not isinstance(norm, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    raise ValueError(f"{where}.norm {prune['norm']} is not a BatchNorm layer of the model")
                norms += 2 * prune["keep"] if norm.affine else 0
        weights = 0
        for index, entry in enumerate(meta["modules"]):
            where = f"modules[{index}]"
            check_keys(entry, ["path", "spec", "shape"], where)
            full = list(_supported_layer(model, entry["path"], f"{where}.path").weight.shape)
            shape = entry["shape"]
            if not isinstance(shape, list) or len(shape) != len(full) or shape[2:] != full[2:] or not all(
                    isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= whole
                    for size, whole in zip(shape, full, strict=True)):
                raise ValueError(f"{where}.shape {shape!r} cannot narrow a layer of shape {full}")
            if entry["path"] in keep and shape[0] != keep[entry["path"]]:
                raise ValueError(f"{where}.shape keeps {shape[0]} outputs, its prune keeps {keep[entry['path']]}")
            weights += math.prod(shape)
        check_payload_sizes(compressed.tensors, {"kept": sum(keep.values()), "weights": weights,
                                                 "biases": biases, "norms": norms})
        offset = 0
        for path, count in keep.items():
            kept, outputs = compressed.tensors["kept"][offset : offset + count], model.get_submodule(path).weight.shape[0]
            if int(kept.min()) < 0 or int(kept.max()) >= outputs:
                raise ValueError(f"a kept channel of {path} lies outside its {outputs} output channels")
            offset += count

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        tensors, meta = compressed.tensors, compressed.meta
        weights, biases, norms = (tensors[k].float() for k in ("weights", "biases", "norms"))
        kept_all = tensors["kept"].long()
        kept, offset = {}, 0
        for prune in meta["prunes"]:
            kept[prune["producer"]] = kept_all[offset : offset + prune["keep"]]
            offset += prune["keep"]
        pruned = {p["producer"]: p for p in meta["prunes"]}
        w_offset = b_offset = n_offset = 0
        for entry in meta["modules"]:
            path, shape = entry["path"], entry["shape"]
            original = model.get_submodule(path)
            full = list(original.weight.shape)
            if not is_supported(original) or len(shape) != len(full) or shape[2:] != full[2:] or \
                    not (1 <= shape[0] <= full[0] and 1 <= shape[1] <= full[1]):
                raise ValueError(f"id_prune artifact: {path} would become {shape}, which a layer of shape {full} "
                                 "cannot be narrowed to")
            layer = build_layer(layer_spec(original), shape[1], shape[0])  # the model's kernel, stride, padding
            with torch.no_grad():
                count = math.prod(shape)
                layer.weight.copy_(weights[w_offset : w_offset + count].reshape(layer.weight.shape))
                w_offset += count
                if layer.bias is not None and path in pruned:
                    layer.bias.copy_(biases[b_offset : b_offset + shape[0]])
                    b_offset += shape[0]
                elif layer.bias is not None:
                    layer.bias.copy_(original.bias)  # a layer only fed by a pruned one keeps its bias
            replace_module(model, path, layer.to(original.weight.device))
        for prune in meta["prunes"]:
            if prune["norm"] is None:
                continue
            index = kept[prune["producer"]]
            original = model.get_submodule(prune["norm"])
            norm = _norm_like(original, index.numel(), _norm_spec(original))  # the model's own norm settings
            with torch.no_grad():
                if norm.affine:
                    k = index.numel()
                    norm.weight.copy_(norms[n_offset : n_offset + k])
                    norm.bias.copy_(norms[n_offset + k : n_offset + 2 * k])
                    n_offset += 2 * k
                if norm.track_running_stats:  # buffers, not parameters: sliced from the model itself
                    norm.running_mean.copy_(original.running_mean[index])
                    norm.running_var.copy_(original.running_var[index])
            device = next(iter(original.buffers()), torch.zeros(0)).device
            replace_module(model, prune["norm"], norm.to(device))
        if w_offset != weights.numel() or b_offset != biases.numel() or n_offset != norms.numel():
            raise ValueError("id_prune artifact: payload size does not match its layer list")
        return model


def _shapes(model: nn.Module, pairs: list[PrunablePair], keep: dict[str, int]) -> dict[str, tuple[int, int]]:
    """(outputs, inputs) of every changed layer once each producer keeps keep[producer] channels."""
    out_keep = {p.producer: keep[p.producer] for p in pairs}
    in_keep = {p.consumer: keep[p.producer] for p in pairs}
    shapes = {}
    for path in _changed_modules(pairs):
        weight = model.get_submodule(path).weight
        shapes[path] = (out_keep.get(path, weight.shape[0]), in_keep.get(path, weight.shape[1]))
    return shapes


def _prune_pair(model: nn.Module, pair: PrunablePair, index: torch.Tensor, t: torch.Tensor) -> None:
    """In place: keep the producer's output channels `index` (and their BN entries), fold T into the consumer."""
    producer = model.get_submodule(pair.producer)
    layer = build_layer(layer_spec(producer), producer.weight.shape[1], index.numel())
    with torch.no_grad():
        layer.weight.copy_(producer.weight[index])
        if layer.bias is not None:
            layer.bias.copy_(producer.bias[index])
    replace_module(model, pair.producer, layer.to(producer.weight.device))
    if pair.norm:
        original = model.get_submodule(pair.norm)
        norm = _norm_like(original, index.numel(), _norm_spec(original))
        with torch.no_grad():
            if norm.affine:
                norm.weight.copy_(original.weight[index])
                norm.bias.copy_(original.bias[index])
            if norm.track_running_stats:
                norm.running_mean.copy_(original.running_mean[index])
                norm.running_var.copy_(original.running_var[index])
        replace_module(model, pair.norm, norm.to(next(iter(original.buffers()), torch.zeros(0)).device))
    consumer = model.get_submodule(pair.consumer)
    folded = torch.einsum("oi...,ki->ok...", consumer.weight.detach().double(), t.to(consumer.weight.device))
    layer = build_layer(layer_spec(consumer), index.numel(), consumer.weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(folded.float())
        if layer.bias is not None:
            layer.bias.copy_(consumer.bias)
    replace_module(model, pair.consumer, layer.to(consumer.weight.device))


def _changed_modules(pairs: list[PrunablePair]) -> list[str]:
    """Every layer whose weight changes (pruned outputs and/or folded inputs), in model order, once."""
    paths: list[str] = []
    for pair in pairs:
        for path in (pair.producer, pair.consumer):
            if path not in paths:
                paths.append(path)
    return paths


def _submodule(model: nn.Module, path, where: str) -> nn.Module:
    try:
        return model.get_submodule(path) if isinstance(path, str) else None
    except AttributeError:
        raise ValueError(f"{where} {path!r} is not a module of the model") from None


def _supported_layer(model: nn.Module, path, where: str) -> nn.Module:
    module = _submodule(model, path, where)
    if module is None or not is_supported(module):
        raise ValueError(f"{where} {path!r} is not a conv or linear layer of the model")
    return module


def _norm_spec(norm: nn.Module) -> dict:
    return {"kind": "batchnorm1d" if isinstance(norm, nn.BatchNorm1d) else "batchnorm2d", "eps": norm.eps,
            "momentum": norm.momentum, "affine": norm.affine, "track_running_stats": norm.track_running_stats}


def _norm_like(original: nn.Module, channels: int, spec: dict) -> nn.Module:
    cls = nn.BatchNorm1d if spec["kind"] == "batchnorm1d" else nn.BatchNorm2d
    norm = cls(channels, eps=spec["eps"], momentum=spec["momentum"], affine=spec["affine"],
               track_running_stats=spec["track_running_stats"])
    if norm.track_running_stats and getattr(original, "num_batches_tracked", None) is None:
        norm.register_buffer("num_batches_tracked", None)  # match models whose BN has no counter
    return norm


def activation_grams(model: nn.Module, pairs: list[PrunablePair], images: torch.Tensor,
                     batch_size: int) -> dict[str, torch.Tensor]:
    """Z^T Z (float64) of the input of every consumer layer over the calibration images."""
    grams: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(path: str):
        def accumulate(module, inputs):
            x = inputs[0].detach()
            rows = x.movedim(1, -1).reshape(-1, x.shape[1]).double() if x.dim() > 2 else x.double()
            grams[path] = grams.get(path, 0) + rows.T @ rows

        return accumulate

    for pair in pairs:
        handles.append(model.get_submodule(pair.consumer).register_forward_pre_hook(hook_for(pair.consumer)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for start in range(0, images.shape[0], batch_size):
                model(images[start : start + batch_size].to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {path: gram.cpu() for path, gram in grams.items()}


def output_positions(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Per conv/linear layer, how many times its weight is applied to one input (output pixels, or rows)."""
    positions: dict[str, int] = {}
    handles = []
    for path, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            def record(module, inputs, output, path=path):
                channel_dim = output.dim() - 1 if isinstance(module, nn.Linear) else 1
                positions[path] = output[:1].numel() // output.shape[channel_dim]
            handles.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1].to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return positions


def model_flops(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of every conv and linear layer for one input (the count FLOP tables usually give)."""
    positions = output_positions(model, example)
    return sum(model.get_submodule(path).weight.numel() * count for path, count in positions.items())
