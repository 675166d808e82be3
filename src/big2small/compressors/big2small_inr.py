"""`big2small`: each weight tensor is replaced by a small INR (coordinate -> value MLP) fitted to it, data-free.

Per layer: standardise the weights with their mean and standard deviation (both stored), fit a Fourier-feature
MLP from normalised index coordinates to the standardised values, store its parameters in fp16. Rebuild =
evaluate the INR on the full grid, then undo the standardisation.

With `width: null` the INR width of each layer is the largest whose bytes fit the layer's share of the budget
`original_bytes / target_ratio`; the budget is then tightened until the whole artifact, header included, meets
the target. A layer too small for any INR of at least `min_width` to save bytes is stored as fp16 instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.compressors import register
from big2small.compressors.base import Compressor
from big2small.compressors.layers import set_parameter
from big2small.errors import ConfigError, FittingError
from big2small.inr.fitting import INRFitModule, INRGroup
from big2small.inr.networks import BatchedFourierMLP, mlp_parameter_count

INR_BYTES_PER_PARAM = 2  # fp16 storage
RAW_BYTES_PER_WEIGHT = 2  # fp16 fallback for layers too small to benefit


@register
class Big2SmallCompressor(Compressor):
    name = "big2small"

    def __init__(self, target_ratio: float | None = 8.0, width: int | None = None, min_width: int = 4,
                 depth: int = 2, frequencies: int = 4, activation: str = "relu", steps: int = 1000,
                 lr: float = 1e-3, batch_size: int = 4096, seed: int = 0,
                 layer_types=("conv", "linear"), min_params: int = 0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        if (width is None) == (target_ratio is None):
            raise ConfigError("big2small: set exactly one of width and target_ratio (the other null)")
        for key, value, low in (("width", width, 1), ("min_width", min_width, 1), ("depth", depth, 1),
                                ("frequencies", frequencies, 0), ("steps", steps, 1), ("batch_size", batch_size, 1)):
            if value is not None and (int(value) != value or int(value) < low):
                raise ConfigError(f"big2small: {key} must be an integer >= {low} (got {value})")
        if activation not in ("relu", "gelu"):
            raise ConfigError(f"big2small: activation must be relu or gelu (got {activation!r})")
        if not float(lr) > 0 or not math.isfinite(float(lr)):
            raise ConfigError(f"big2small: lr must be a positive number (got {lr})")
        self.width = None if width is None else int(width)
        self.min_width, self.depth, self.frequencies = int(min_width), int(depth), int(frequencies)
        self.activation, self.steps, self.lr = activation, int(steps), float(lr)
        self.batch_size, self.seed = int(batch_size), int(seed)

    def settings(self) -> dict:
        return {**super().settings(), "width": self.width, "min_width": self.min_width, "depth": self.depth,
                "frequencies": self.frequencies, "activation": self.activation, "steps": self.steps,
                "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed}

    # ---------------------------------------------------------------- fitting
    def fit(self, model, *, data=None, trainer_factory=None) -> Compressed:
        if trainer_factory is None:
            raise ValueError("big2small: fit needs a trainer_factory (Lightning runs the fitting loop)")
        weights = self.select(model)
        for name, weight in weights.items():
            if not torch.isfinite(weight).all():
                raise FittingError(f"big2small: layer {name} has NaN or inf weights before fitting")
        widths = self._choose_widths(weights)
        stats = {name: (w.mean(), w.std(unbiased=False).clamp_min(1e-12)) for name, w in weights.items()}

        torch.manual_seed(self.seed)
        groups = []
        for (width, dims), names in _group_layers(widths, weights).items():
            net = BatchedFourierMLP(len(names), dims, self.frequencies, width, self.depth, self.activation)
            targets = [(weights[n] - stats[n][0]) / stats[n][1] for n in names]
            groups.append(INRGroup(names, targets, net))
        if groups:
            module = INRFitModule(groups, self.steps, self.lr, self.batch_size, self.seed)
            trainer_factory(max_steps=self.steps, max_epochs=1, enable_checkpointing=False).fit(module)

        compressed = self._pack(weights, widths, stats, groups)
        compressed.layer_stats = {
            name: {"inr_width": widths[name] or 0,
                   "stored_bytes": self._layer_bytes(weights[name], widths[name])}
            for name in weights
        }
        return compressed

    def _layer_bytes(self, weight: torch.Tensor, width: int | None) -> int:
        if width is None:
            return RAW_BYTES_PER_WEIGHT * weight.numel()
        return INR_BYTES_PER_PARAM * mlp_parameter_count(weight.dim(), self.frequencies, width, self.depth) + 8

    def _choose_widths(self, weights: dict[str, torch.Tensor]) -> dict[str, int | None]:
        """Width per layer (None = fp16 fallback) so that the whole artifact meets target_ratio."""
        if self.width is not None:
            return {n: self.width if self._layer_bytes(w, self.width) < self._layer_bytes(w, None) else None
                    for n, w in weights.items()}
        original = 4 * sum(w.numel() for w in weights.values())
        scale = 1.0
        for _ in range(30):
            widths = {n: self._widest_within(w, scale * 4 * w.numel() / self.target_ratio) for n, w in weights.items()}
            size = len(self._pack(weights, widths, None, None).to_bytes())
            if original / size >= self.target_ratio:
                return widths
            scale *= 0.97 * (original / size) / self.target_ratio
        raise ConfigError(
            f"big2small: target_ratio {self.target_ratio} is out of reach for this model "
            f"(layers stored as fp16 alone give {original / size:.2f}x); lower it or set min_width smaller"
        )

    def _widest_within(self, weight: torch.Tensor, budget_bytes: float) -> int | None:
        """Widest INR within budget, or None when no INR of min_width fits or fp16 would be no larger."""
        width, candidate = None, self.min_width
        while self._layer_bytes(weight, candidate) <= budget_bytes:
            width, candidate = candidate, candidate + 1
        if width is None or self._layer_bytes(weight, width) >= self._layer_bytes(weight, None):
            return None
        return width

    # ---------------------------------------------------------------- storage
    def _pack(self, weights, widths, stats, groups) -> Compressed:
        """The artifact. With stats/groups None, zero-filled payloads of the final sizes (for budgeting)."""
        inr_by_name: dict[str, torch.Tensor] = {}
        for group in groups or []:
            flat = group.net.flat_parameters().detach().to(torch.float16)
            inr_by_name.update({name: flat[g] for g, name in enumerate(group.names)})
        layers, inr_parts, raw_parts, stat_rows = [], [], [], []
        for name, weight in weights.items():
            width = widths[name]
            layers.append({"name": name, "shape": list(weight.shape), "width": width})
            if width is None:
                raw_parts.append(weight.reshape(-1).to(torch.float16))
                continue
            count = mlp_parameter_count(weight.dim(), self.frequencies, width, self.depth)
            inr_parts.append(inr_by_name.get(name, torch.zeros(count, dtype=torch.float16)))
            stat_rows.append(torch.stack(stats[name]) if stats else torch.zeros(2))
        tensors = {
            "inr": torch.cat(inr_parts) if inr_parts else torch.zeros(0, dtype=torch.float16),
            "raw": torch.cat(raw_parts) if raw_parts else torch.zeros(0, dtype=torch.float16),
            "stats": torch.stack(stat_rows).float() if stat_rows else torch.zeros(0, 2),
        }
        meta = {"replaced": list(weights), "layers": layers, "depth": self.depth,
                "frequencies": self.frequencies, "activation": self.activation}
        return Compressed(self.name, self.settings(), tensors, meta)

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        meta, tensors = compressed.meta, compressed.tensors
        depth, frequencies, activation = int(meta["depth"]), int(meta["frequencies"]), meta["activation"]
        inr_offset = raw_offset = stat_index = 0
        pending: dict[tuple[int, int], list[tuple[str, list[int], torch.Tensor, torch.Tensor]]] = {}
        for layer in meta["layers"]:
            shape, width = layer["shape"], layer["width"]
            if width is None:
                count = math.prod(shape)
                set_parameter(model, layer["name"], tensors["raw"][raw_offset : raw_offset + count].float().reshape(shape))
                raw_offset += count
                continue
            count = mlp_parameter_count(len(shape), frequencies, width, depth)
            params = tensors["inr"][inr_offset : inr_offset + count].float()
            pending.setdefault((width, len(shape)), []).append(
                (layer["name"], shape, params, tensors["stats"][stat_index]))
            inr_offset, stat_index = inr_offset + count, stat_index + 1
        if inr_offset != tensors["inr"].numel() or raw_offset != tensors["raw"].numel():
            raise ValueError("big2small artifact: payload size does not match its layer list")
        for (width, dims), items in pending.items():
            net = BatchedFourierMLP(len(items), dims, frequencies, width, depth, activation)
            net.load_flat_parameters(torch.stack([params for _, _, params, _ in items]))
            group = INRGroup([n for n, *_ in items], [torch.zeros(s) for _, s, _, _ in items], net)
            for (name, _, _, stat), standardised in zip(items, group.predict_all()):
                set_parameter(model, name, standardised * stat[1] + stat[0])
        return model


def _group_layers(widths: dict[str, int | None], weights: dict[str, torch.Tensor]) -> dict[tuple[int, int], list[str]]:
    groups: dict[tuple[int, int], list[str]] = {}
    for name, width in widths.items():
        if width is not None:
            groups.setdefault((width, weights[name].dim()), []).append(name)
    return groups
