"""Data-free function-space refinement: after weight-space fitting, tune the INRs, and the roundings of layers
stored as codes, so that the rebuilt network's outputs match the original network's on synthetic inputs. No data
module is ever touched.

The inputs come from synthesis.py (seen flipped and shifted, or mixed in pairs, with `views`: views.py; then, with an
`adversarial_step`, moved towards a worse match: adversarial.py); the outputs are compared as matching.py says; the
refinement is a Lightning fit of the INR parameters and rounding offsets.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from big2small.methods.big2small.adversarial import adversarial_inputs
from big2small.methods.big2small.code_rate import CodeRate, entropy_bits
from big2small.methods.big2small.fitting import INRGroup, adam_with_cosine_decay
from big2small.methods.big2small.matching import (
    batch_variances,
    hard_sample_mean,
    input_sums,
    matching_loss,
    observing,
    outputs_of,
)
from big2small.methods.big2small.reconstruct import LayerCode, reconstruct
from big2small.methods.big2small.rounding_offsets import RoundingOffsets, soft_blend
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import native_bf16
from big2small.methods.big2small.views import views_of

# How fast the weight of the codes' bits in the loss follows their excess over the limit: each step it grows by this
# times (bits / limit - 1), and never falls below 0 (a Lagrange multiplier by dual ascent).
RATE_WEIGHT_STEP = 3.0
# With a `bit_scale` (storage.context_refinement), every this many steps the bit limit is set again to the first
# limit times the scale the codes as they stand give (the share their context-coded streams save).
CONTEXT_RECOUNT_STEPS = 25

# The most memory the teacher's outputs on every refinement input may take to be computed once and kept; beyond it
# the teacher runs beside the student on every batch (ResNet-20's layer outputs on 256 CIFAR inputs: about 0.2 GB).
TEACHER_CACHE_BYTES = 1 << 30


def refined_label(inrs: bool, codes: bool, inputs: str) -> str:
    """What the refinement's progress bar says it refines, and on what."""
    what = "INRs and codes" if inrs and codes else "INRs" if inrs else "codes"
    return f"refining {what} on {'training images' if inputs == 'data' else 'synthetic inputs'}"


class RefineModule(L.LightningModule):
    """Tunes the INRs of `inr_layers` and the `rounding` of coded layers so that the network rebuilt from them reproduces the teacher on synthetic inputs.

    The loss compares the logits and, weighted by `feature_weight`, the output of every compressed layer, or of
    every block holding one (`match`, matched_modules; each term a mean squared error over the teacher's
    variance, so outputs of any scale count alike). Matching every layer gives each INR its own signal instead
    of one shared through the whole network, which on ResNet-20 generalised better from few synthetic images to
    real ones. The teacher's outputs on the inputs are computed once before the first step where the inputs are
    seen as they are (`views: none`, no `adversarial_step`) and those outputs take at most TEACHER_CACHE_BYTES; else
    the teacher runs alongside the student on every batch. With `hard_weight` > 0 each input's terms are weighted
    by how badly the student matches it (`hard_sample_mean`).

    With a `rate` (code_rate.CodeRate of the coded layers) and `bit_limit`, the codes' bits are held near the limit:
    the loss adds w x (its own value, held constant) x soft bits / bit_limit, where the weight w rises while the
    codes' measured bits exceed the limit and falls back towards 0 while they are under it (RATE_WEIGHT_STEP), so
    code moves are paid for in bits only as far as the bytes require. With a `bit_scale` as well, the limit is the
    first one times what `bit_scale` gives, measured again every CONTEXT_RECOUNT_STEPS steps.
    """


    def __init__(self, groups: list[INRGroup], codes: dict[str, LayerCode], student: nn.Module, teacher: nn.Module,
                 inputs: torch.Tensor, settings: RefinementSettings, inr_layers: set[str], rounding: RoundingOffsets,
                 seed: int, rate: CodeRate | None = None, bit_limit: float = 0.0, tuned: list[str] = (),
                 bit_scale: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.seed = seed
        self.settings, self.inr_layers, self.rounding = settings, inr_layers, rounding
        self.rate, self.bit_limit, self.rate_weight = rate, bit_limit, 0.0
        self.first_bit_limit, self.bit_scale = bit_limit, bit_scale
        self.bf16 = False  # whether the student runs under bf16 autocast: set on the trainer's device (on_fit_start)
        self.progress_label = refined_label(bool(groups), bool(rounding.names), settings.inputs)  # logs.PhaseProgressBar shows it
        # Submodules and buffers, so that all of it is on the trainer's device from setup on: the INRs with their
        # coordinate tables, each layer's outlier code, and the two networks (the teacher frozen; of the student
        # only the 1-D parameters in `tuned` train, the rest take no gradient).
        self.groups = nn.ModuleList(groups)
        self.student, self.teacher = student, teacher
        for model in (student, teacher):
            for p in model.parameters():
                p.requires_grad_(False)
        self.tuned = [student.get_parameter(name) for name in tuned]  # the student's 1-D parameters it tunes
        for p in self.tuned:
            p.requires_grad_(True)
        self.scales = {name: (code.mean, code.std) for name, code in codes.items()}
        self.outlier_buffers = {}
        for index, (name, code) in enumerate(codes.items()):
            self.register_buffer(f"outlier_index_{index}", code.outlier_index, persistent=False)
            self.register_buffer(f"outlier_value_{index}", code.outlier_value, persistent=False)
            self.outlier_buffers[name] = (f"outlier_index_{index}", f"outlier_value_{index}")
        self.observed = matched_modules(teacher, [name.rpartition(".")[0] for name in codes], settings.match,
                                        inputs[:2])
        self.inputs = inputs
        self.wanted: list[torch.Tensor] | None = None  # the teacher's logits then features per input, once cached
        self.wanted_sums: torch.Tensor | None = None  # and their input_sums, stacked: (outputs, inputs, 2)

    def on_fit_start(self) -> None:
        self.bf16 = self.settings.precision == "bf16" or (self.settings.precision == "auto"
                                                          and native_bf16(self.device))
        if self.bf16:
            self.progress_label += " (bf16)"
        as_made = self.settings.views == "none" and self.settings.adversarial_step == 0  # the inputs as they are
        if as_made and teacher_output_bytes(self.teacher, self.observed, self.inputs) <= TEACHER_CACHE_BYTES:
            self.wanted = teacher_outputs(self.teacher, self.observed, self.inputs.to(self.device),
                                          self.settings.batch_size)
            self.wanted_sums = torch.stack([input_sums(outputs) for outputs in self.wanted])

    def train(self, mode: bool = True) -> RefineModule:
        super().train(mode)
        self.student.eval()  # BatchNorm uses, and never updates, its running statistics
        self.teacher.eval()
        return self

    def codes(self) -> dict[str, LayerCode]:
        """Each layer's code, its outlier tensors on the module's device."""
        return {name: LayerCode(*self.scales[name], getattr(self, index), getattr(self, value))
                for name, (index, value) in self.outlier_buffers.items()}

    def inr_weights(self) -> dict[str, torch.Tensor]:
        """The weights of the layers held as INRs, as the INRs now give them."""
        if not self.groups:  # no INR: nothing to reconstruct on this step
            return {}
        return {name: w for name, w in reconstruct(self.groups, self.codes()).items() if name in self.inr_layers}

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(0)
        pools, batch = self.settings.refresh, self.settings.batch_size
        pool_size = len(self.inputs) // pools
        draws = torch.utils.data.RandomSampler(range(pool_size), replacement=True,
                                               num_samples=self.settings.steps * batch, generator=generator)
        sampler = PoolByStep(draws, pool_size, batch, self.settings.steps, pools)
        collate = None
        if self.settings.views != "none":
            view_generator, kind = torch.Generator().manual_seed(self.seed), self.settings.views
            collate = lambda items: [views_of(torch.stack([item[0] for item in items]), kind, view_generator),  # noqa: E731
                                     torch.stack([item[1] for item in items])]
        return DataLoader(TensorDataset(self.inputs, torch.arange(len(self.inputs))),
                          batch_size=self.settings.batch_size, sampler=sampler, collate_fn=collate)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        for group in self.groups:  # the INRs are seen as they are stored
            group.net.fake_quant = group.quantised_bits()

    def training_step(self, batch, batch_idx):
        images, indices = batch
        priced = self.rate_weight > 0  # a rate term of weight 0 adds nothing to the loss or its gradient
        blend = soft_blend(self.global_step, self.settings.steps, self.settings.soft_share)
        coded = self.rounding(None if self.rate is None else self.rate.tables(), priced=priced, blend=blend)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            weights = {**self.inr_weights(), **coded.weights}
        if self.settings.adversarial_step > 0:
            images = adversarial_inputs(self.student, weights, self.teacher, self.observed, images,
                                        self.settings.feature_weight, self.settings.adversarial_step, self.bf16)
        if self.wanted is not None:
            wanted, *wanted_features = (outputs[indices] for outputs in self.wanted)
            sums = self.wanted_sums[:, indices]
        else:
            with torch.no_grad(), observing(self.teacher, self.observed) as wanted_features:
                wanted = self.teacher(images)
            sums = torch.stack([input_sums(outputs) for outputs in [wanted, *wanted_features]])
        with observing(self.student, self.observed) as features, \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            output = functional_call(self.student, weights, (images,), strict=False)
        variances = batch_variances(sums, [t[0].numel() for t in [wanted, *wanted_features]])
        per_input = matching_loss(output, wanted, features, wanted_features, variances, self.settings.feature_weight)
        loss = hard_sample_mean(per_input, self.settings.hard_weight)
        self.log("refine_loss", per_input.mean(), prog_bar=True)
        if self.rate is not None:
            if self.bit_scale is not None and self.global_step % CONTEXT_RECOUNT_STEPS == 0:
                self.bit_limit = self.first_bit_limit * self.bit_scale()
            if priced:
                loss = loss + self.rate_weight * loss.detach() * coded.soft_bits / self.bit_limit
            used = entropy_bits(coded.counts) / self.bit_limit
            self.rate_weight = max(0.0, self.rate_weight + RATE_WEIGHT_STEP * (used - 1))
            self.log("bits_over_limit", used, prog_bar=True)
        return loss

    def configure_optimizers(self):
        parameters = [{"params": [p for group in self.groups for p in group.net.parameters()]},
                      {"params": list(self.rounding.offsets), "lr": self.settings.code_lr},
                      {"params": [g for g in self.rounding.log_gains if g.requires_grad], "lr": self.settings.scale_lr},
                      {"params": self.tuned, "lr": self.settings.affine_lr}]
        return adam_with_cosine_decay([g for g in parameters if g["params"]], self.settings.lr, self.settings.steps)


class PoolByStep(torch.utils.data.Sampler):
    """Indices into `pools` pools of `pool_size` inputs laid end to end: the i-th index `draws` gives, taken from
    the pool of its step (step i // batch of `steps`: pool step * pools // steps)."""

    def __init__(self, draws, pool_size: int, batch: int, steps: int, pools: int) -> None:
        self.draws, self.pool_size, self.batch, self.steps, self.pools = draws, pool_size, batch, steps, pools

    def __len__(self) -> int:
        return len(self.draws)

    def __iter__(self):
        for i, index in enumerate(self.draws):
            yield index + self.pool_size * ((i // self.batch) * self.pools // self.steps)


def teacher_output_bytes(teacher: nn.Module, observed: list[str], inputs: torch.Tensor) -> int:
    """Bytes of the teacher's logits and `observed` outputs on all of `inputs`, from one input's."""
    with torch.no_grad(), observing(teacher, observed) as features:
        logits = teacher(inputs[:1].to(next(teacher.parameters()).device))
    return len(inputs) * sum(t.numel() * t.element_size() for t in [logits, *features])


def teacher_outputs(teacher: nn.Module, observed: list[str], inputs: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """The teacher's logits and then each `observed` module's output, on every input, computed `batch` at a time."""
    parts: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for chunk in inputs.split(batch):
            with observing(teacher, observed) as features:
                logits = teacher(chunk)
            parts.append([logits, *features])
    return [torch.cat(outputs) for outputs in zip(*parts, strict=True)]


def matched_modules(model: nn.Module, layers: list[str], match: str, example: torch.Tensor) -> list[str]:
    """The modules of `model` whose outputs are matched: the compressed `layers` themselves, or (blocks) each one's
    parent module where that returns one tensor on `example` (else, as for a layer the model holds itself, the
    layer)."""
    layers = sorted(set(layers))
    if match == "layers":
        return layers
    parents = {name: name.rpartition(".")[0] for name in layers}
    with torch.no_grad(), outputs_of(model, sorted(set(parents.values()) - {""})) as returns:
        model(example)
    return sorted({parent if isinstance(returns.get(parent), torch.Tensor) else name
                   for name, parent in parents.items()})
