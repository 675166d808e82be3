"""`big2small`: every weight tensor becomes a small INR (coordinate -> value MLP) fitted to it, data-free.

The steps, each a config group of conf/compressor/big2small.yaml (the inr/ modules hold the details):
1. permutation (optional): reorder channels without changing the function, so neighbouring kernels are similar;
2. outliers: per layer, weights beyond k sigma are stored exactly, the rest clipped and standardised;
3. inr + budget: coordinates per unit/scope, the width of each INR chosen so the whole artifact meets
   `target_ratio` (measured on the real serialised size);
4. loss + fit: all INRs fitted at once (same-shaped ones as one batched computation) by a Lightning Trainer, on
   one or several ranks, with the Frequency-Aware Loss; 8-bit storage ends with quantisation-aware steps;
5. refinement (optional): the INRs tuned so the rebuilt network matches the original on synthetic inputs.

Rebuild reads the artifact alone: INR parameters, per-layer statistics, outliers and channel orders. The
channel orders are stored (a few hundred bytes, counted) so that the rebuilt weights can be put back in the
original order and the model's uncompressed parameters (BN, biases) stay valid as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.compressors import register
from big2small.compressors.base import Compressor
from big2small.compressors.bitpack import pack_uint, unpack_uint
from big2small.compressors.layers import set_parameter
from big2small.errors import ConfigError, FittingError
from big2small.inr import outliers as outlier_coding
from big2small.inr.budget import choose_widths, inr_bytes
from big2small.inr.coords import FitTarget, build_targets
from big2small.inr.fitting import INRFitModule, INRGroup
from big2small.inr.networks import build_network, layer_sizes
from big2small.inr.reconstruct import LayerCode, reconstruct
from big2small.inr.settings import (
    FitSettings,
    INRSettings,
    LossSettings,
    OutlierSettings,
    PermutationSettings,
    RefinementSettings,
    StorageSettings,
    from_config,
    input_shape_setting,
)
from big2small.inr.storage import pack, unpack

log = logging.getLogger(__name__)


@register
class Big2SmallCompressor(Compressor):
    name = "big2small"

    def __init__(self, target_ratio: float | None = 8.0, inr=None, outliers=None, loss=None, storage=None,
                 fit=None, permutation=None, refinement=None, input_shape=None, seed: int = 0,
                 layer_types=("conv", "linear"), min_params: int = 0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        self.inr = from_config(INRSettings, inr, "inr")
        self.outliers = from_config(OutlierSettings, outliers, "outliers")
        self.loss = from_config(LossSettings, loss, "loss")
        self.storage = from_config(StorageSettings, storage, "storage")
        self.fit_settings = from_config(FitSettings, fit, "fit")
        self.permutation = from_config(PermutationSettings, permutation, "permutation")
        self.refinement = from_config(RefinementSettings, refinement, "refinement")
        self.input_shape = input_shape_setting(input_shape)
        self.seed = int(seed)
        if (self.inr.width is None) == (target_ratio is None):
            raise ConfigError("big2small: set exactly one of target_ratio and inr.width (the other null)")
        if self.fit_settings.batch_size is not None and self.loss.frequency_weight > 0:
            raise ConfigError("big2small: the frequency loss transforms whole layers; set fit.batch_size=null "
                              "or loss.frequency_weight=0")
        if self.storage.bits == 8 and self.storage.qat_steps > self.fit_settings.steps:
            raise ConfigError("big2small: storage.qat_steps must not exceed fit.steps")

    def settings(self) -> dict:
        groups = {"inr": self.inr, "outliers": self.outliers, "loss": self.loss, "storage": self.storage,
                  "fit": self.fit_settings, "permutation": self.permutation, "refinement": self.refinement}
        return {**super().settings(), **{k: dict(vars(v)) for k, v in groups.items()},
                "input_shape": self.input_shape, "seed": self.seed}

    # ---------------------------------------------------------------- fitting
    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        if trainer_factory is None:
            raise ValueError("big2small: fit needs a trainer_factory (Lightning runs the fitting loop)")
        model = model.eval()
        orders: list[tuple] = []
        if self.permutation.enabled:
            from big2small.inr.permutation import check_same_function, permute_model

            permuted, orders = permute_model(model)
            example = torch.randn(8, *self.model_input_shape(model), generator=torch.Generator().manual_seed(0))
            check_same_function(model, permuted, example, self.permutation.tolerance)
            model = permuted
        weights = self.select(model)
        for name, weight in weights.items():
            if not torch.isfinite(weight).all():
                raise FittingError(f"big2small: layer {name} has NaN or inf weights before fitting")
        prepared = {name: outlier_coding.preprocess(w, self.outliers) for name, w in weights.items()}
        targets = build_targets({n: p.target for n, p in prepared.items()}, self.inr.unit, self.inr.scope)
        widths = choose_widths(targets, self.inr, self.storage.bits, self.target_ratio,
                               lambda w: len(self._pack(weights, prepared, targets, w, None, orders).to_bytes()))
        groups = self._groups(targets, widths)
        if groups:
            self._fit_weights(groups, weights, widths, trainer_factory)
            if self.refinement.enabled:
                self._refine(model, groups, weights, prepared, targets, widths, trainer_factory)
        compressed = self._pack(weights, prepared, targets, widths, groups, orders)
        compressed.layer_stats = self._layer_stats(weights, prepared, targets, widths)
        return compressed

    def _groups(self, targets: list[FitTarget], widths: dict[str, int | None]) -> list[INRGroup]:
        return [INRGroup(members, build_network(self.inr, dims, outputs, width,
                                                [self.inr_seed(t.ordinal) for t in members]))
                for (dims, outputs, width, _), members in _stacks(targets, widths).items()]

    def inr_seed(self, ordinal: int) -> int:
        return self.seed * 1_000_003 + ordinal

    def _fit_weights(self, groups, weights, widths, trainer_factory) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        settings = self.fit_settings
        module = INRFitModule(groups, settings, self.loss, self.storage, self.seed)
        callbacks, resume_from = [], None
        if settings.checkpoint_dir:
            folder = Path(settings.checkpoint_dir) / self._fit_key(weights, widths)
            callbacks.append(ModelCheckpoint(dirpath=folder, save_last=True, save_top_k=0,
                                             every_n_train_steps=settings.checkpoint_every))
            last = folder / "last.ckpt"
            if settings.resume and last.is_file():
                resume_from = str(last)
                log.info("big2small: resuming the fit from %s", last)
            elif settings.resume:
                log.info("big2small: fit.resume=true but no checkpoint at %s; fitting from the start", last)
        trainer = trainer_factory(max_steps=settings.steps, max_epochs=-1, use_distributed_sampler=False,
                                  enable_checkpointing=bool(callbacks), callbacks=callbacks)
        trainer.fit(module, ckpt_path=resume_from)

    def _fit_key(self, weights, widths) -> str:
        """Checkpoints of a fit are found again only by a fit of the same weights with the same settings."""
        settings = self.settings()
        settings["fit"] = {k: v for k, v in settings["fit"].items()  # where and whether to resume is not the fit
                           if k not in ("resume", "checkpoint_dir", "checkpoint_every")}
        digest = hashlib.sha256(json.dumps([settings, widths], sort_keys=True, default=str).encode())
        for name, weight in weights.items():
            digest.update(name.encode())
            digest.update(weight.numpy().tobytes())
        return digest.hexdigest()[:16]

    def _refine(self, model, groups, weights, prepared, targets, widths, trainer_factory) -> None:
        import copy

        from big2small.inr.refinement import RefineModule, synthetic_inputs

        student = copy.deepcopy(model)
        for target in targets:  # layers stored in fp16 take their stored values during refinement too
            if widths[target.key] is None:
                for segment in target.segments:
                    set_parameter(student, segment.name, weights[segment.name].half().float())
        teacher = copy.deepcopy(model)  # makes the synthetic inputs, then serves as the frozen reference
        inputs = synthetic_inputs(teacher, self.model_input_shape(model), self.refinement, self.seed)
        module = RefineModule(groups, _layer_codes(prepared), student, teacher, inputs,
                              self.refinement, quantised=self.storage.bits == 8)
        trainer = trainer_factory(max_steps=self.refinement.steps, max_epochs=-1, use_distributed_sampler=False,
                                  enable_checkpointing=False)
        trainer.fit(module)

    def accept_input_shape(self, shape: list[int] | None) -> None:
        if self.input_shape is None and shape is not None:
            self.input_shape = input_shape_setting(shape)

    def model_input_shape(self, model: nn.Module) -> list[int]:
        """input_shape (set, or accepted from the data), else inferred: the first conv's channels at 32 per side."""
        if self.input_shape is not None:
            return self.input_shape
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                return [module.in_channels] + [32] * (module.weight.dim() - 2)
            if isinstance(module, nn.Linear):
                return [module.in_features]
        raise ConfigError("big2small: cannot infer the model's input shape; set compressor.input_shape")

    def _layer_stats(self, weights, prepared, targets, widths) -> dict[str, dict]:
        stats = {}
        for target in targets:
            width = widths[target.key]
            total = target.values.numel()
            family_bytes = inr_bytes(self.inr, target, width, self.storage.bits) if width else 0
            for segment in target.segments:
                p = prepared[segment.name]
                share = segment.count * target.outputs / total
                stats[segment.name] = {
                    "stored_as": "inr" if width else "fp16", "inr_width": width or 0,
                    "inr_bytes": round(family_bytes * share),
                    "outliers": int(p.outlier_index.numel()) if width else 0,
                    "outlier_bytes": (2 * p.outlier_index.numel() + outlier_coding.encoded_size(
                        p.outlier_index, weights[segment.name].numel())) if width else 0,
                }
        return stats

    # ---------------------------------------------------------------- storage
    def _pack(self, weights, prepared, targets, widths, groups, orders) -> Compressed:
        """The artifact. With groups None, placeholder INR parameters of the final sizes (for budgeting)."""
        bits = self.storage.bits
        fitted = {}
        for group in groups or []:
            stored = pack(group.net, bits)
            for g, target in enumerate(group.targets):
                fitted[target.key] = {kind: rows[g] for kind, rows in stored.items()}
        halves, codes, raw, stats, outlier_values, outlier_bytes = [], [], [], [], [], []
        layer_meta: dict[str, dict] = {}
        for target in targets:
            width = widths[target.key]
            if width is None:
                raw += [weights[s.name].reshape(-1).half() for s in target.segments]
                continue
            count16, count8 = _stored_counts(layer_sizes(self.inr, target.dims, target.outputs, width), bits)
            rows = fitted.get(target.key, {"fp16": torch.zeros(count16, dtype=torch.float16),
                                           "int8": torch.zeros(count8, dtype=torch.int8)})
            halves.append(rows["fp16"])
            if bits == 8:
                codes.append(rows["int8"])
            for segment in target.segments:
                p = prepared[segment.name]
                coding, index_bytes = outlier_coding.encode_indices(p.outlier_index, weights[segment.name].numel())
                stats.append(torch.tensor([p.mean, p.std]))
                outlier_values.append(p.outlier_value)
                outlier_bytes.append(index_bytes)
                layer_meta[segment.name] = {"outliers": int(p.outlier_index.numel()), "coding": coding,
                                            "index_bytes": int(index_bytes.numel())}
        tensors = {
            "inr_fp16": _cat(halves, torch.float16), "raw": _cat(raw, torch.float16),
            "stats": torch.stack(stats).float() if stats else torch.zeros(0, 2),
            "outlier_values": _cat(outlier_values, torch.float16), "outlier_index": _cat(outlier_bytes, torch.uint8),
        }
        if bits == 8:
            tensors["inr_int8"] = _cat(codes, torch.int8)
        permutation_meta = self._pack_orders(orders, tensors)
        inr = self.inr
        meta = {
            "replaced": list(weights),
            "inr": {"kind": inr.kind, "unit": inr.unit, "scope": inr.scope, "depth": inr.depth,
                    "frequencies": inr.frequencies, "activation": inr.activation, "omega0": inr.omega0},
            "bits": bits,
            "widths": {t.key: widths[t.key] for t in targets},
            "layers": [{"name": n, "shape": list(w.shape), **layer_meta.get(n, {})} for n, w in weights.items()],
            "permutation": permutation_meta,
        }
        return Compressed(self.name, self.settings(), tensors, meta)

    @staticmethod
    def _pack_orders(orders, tensors) -> dict:
        spaces, layers, packed = [], {}, []
        for index, (space, order) in enumerate(orders):
            bits = max(1, math.ceil(math.log2(space.size)))
            packed.append(pack_uint(order, bits))
            spaces.append({"size": space.size, "bits": bits})
            for module in space.producers:
                layers.setdefault(f"{module}.weight", [None, None])[0] = index
            for module in space.consumers:
                layers.setdefault(f"{module}.weight", [None, None])[1] = index
        if packed:
            tensors["permutation"] = torch.cat(packed)
        return {"spaces": spaces, "layers": layers}

    # ---------------------------------------------------------------- decoding
    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        meta, tensors = compressed.meta, compressed.tensors
        inr = INRSettings(**{**meta["inr"], "width": None})
        bits = int(meta["bits"])
        layers = {layer["name"]: layer for layer in meta["layers"]}
        shapes = {name: torch.zeros(layer["shape"]) for name, layer in layers.items()}
        targets = build_targets(shapes, inr.unit, inr.scope)
        widths = {key: (None if w is None else int(w)) for key, w in meta["widths"].items()}
        if sorted(t.key for t in targets) != sorted(widths):
            raise ValueError("big2small artifact: its targets do not match its layer list")

        half_at = code_at = raw_at = stat_at = value_at = index_at = 0
        rows: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
        codes: dict[str, LayerCode] = {}
        decoded: dict[str, torch.Tensor] = {}
        for target in targets:
            width = widths[target.key]
            if width is None:
                for segment in target.segments:
                    count = math.prod(segment.shape)
                    decoded[segment.name] = tensors["raw"][raw_at : raw_at + count].float().reshape(segment.shape)
                    raw_at += count
                continue
            count16, count8 = _stored_counts(layer_sizes(inr, target.dims, target.outputs, width), bits)
            int8 = tensors["inr_int8"][code_at : code_at + count8] if bits == 8 else None
            rows[target.key] = (tensors["inr_fp16"][half_at : half_at + count16], int8)
            half_at, code_at = half_at + count16, code_at + count8
            for segment in target.segments:
                layer = layers[segment.name]
                count, size = layer["outliers"], layer["index_bytes"]
                index = outlier_coding.decode_indices(layer["coding"], tensors["outlier_index"][index_at:index_at + size],
                                                      count, math.prod(segment.shape))
                mean, std = tensors["stats"][stat_at].tolist()
                codes[segment.name] = LayerCode(mean, std, index, tensors["outlier_values"][value_at:value_at + count])
                stat_at, value_at, index_at = stat_at + 1, value_at + count, index_at + size
        if (half_at, raw_at, index_at) != (tensors["inr_fp16"].numel(), tensors["raw"].numel(),
                                           tensors["outlier_index"].numel()):
            raise ValueError("big2small artifact: payload size does not match its layer list")

        groups = []
        for (dims, outputs, width, _), members in _stacks(targets, widths).items():
            net = build_network(inr, dims, outputs, width, [0] * len(members))
            int8_rows = [rows[t.key][1] for t in members]
            unpack(net, torch.stack([rows[t.key][0] for t in members]),
                   torch.stack(int8_rows) if bits == 8 else None, bits)
            groups.append(INRGroup(members, net))
        with torch.no_grad():
            decoded.update(reconstruct(groups, codes))
        orders = _unpack_orders(meta["permutation"], tensors.get("permutation"))
        for name, weight in decoded.items():
            set_parameter(model, name, _restore_order(weight, meta["permutation"]["layers"].get(name), orders))
        return model


def _stacks(targets: list[FitTarget], widths: dict[str, int | None]) -> dict[tuple, list[FitTarget]]:
    """INR-fitted targets grouped into stacks of one shape and one row count (padding would waste compute)."""
    stacks: dict[tuple, list[FitTarget]] = defaultdict(list)
    for target in targets:
        if widths[target.key] is not None:
            stacks[(target.dims, target.outputs, widths[target.key], target.coords.shape[0])].append(target)
    return stacks


def _stored_counts(sizes: list[tuple[int, int]], bits: int) -> tuple[int, int]:
    """(fp16 values, int8 values) one INR stores."""
    if bits == 16:
        return sum(i * o + o for i, o in sizes), 0
    return sum(2 * o for _, o in sizes), sum(i * o for i, o in sizes)


def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in parts]).to(dtype) if parts else torch.zeros(0, dtype=dtype)


def _layer_codes(prepared) -> dict[str, LayerCode]:
    return {name: LayerCode(p.mean, p.std, p.outlier_index, p.outlier_value) for name, p in prepared.items()}


def _unpack_orders(meta: dict, packed: torch.Tensor | None) -> list[torch.Tensor]:
    orders, offset = [], 0
    for space in meta["spaces"]:
        size = math.ceil(space["size"] * space["bits"] / 8)
        order = unpack_uint(packed[offset : offset + size], space["bits"], space["size"])
        if sorted(order.tolist()) != list(range(space["size"])):
            raise ValueError("big2small artifact: a stored channel order is not a permutation")
        orders.append(order)
        offset += size
    return orders


def _restore_order(weight: torch.Tensor, spaces: list | None, orders: list[torch.Tensor]) -> torch.Tensor:
    """Undo the channel permutation: permuted channel j is original channel order[j]."""
    if not spaces:
        return weight
    out_space, in_space = spaces
    if out_space is not None:
        weight = weight.index_select(0, torch.argsort(orders[out_space]))
    if in_space is not None:
        weight = weight.index_select(1, torch.argsort(orders[in_space]))
    return weight
