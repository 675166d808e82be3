"""Fitting stacks of INRs to their targets in one Lightning loop.

An `INRGroup` holds the G targets whose INRs have one shape (kind, coordinate dims, outputs, width) and one
storage precision, and one `BatchedINR` for all of them, so a step costs one batched computation per group, not a
Python loop per layer. With several storage bits (`storage.bits: [4, 6, 8]`) a target has one INR per bits, in as
many groups, until the codec choice keeps one.

Each INR's loss depends on its own parameters only, its coordinates are sampled from its own seed, and the
loss is a sum over INRs, so every INR follows the same trajectory whichever INRs share its stack. That is what
lets several ranks each fit a share of the INRs (balanced by cost): the total loss on a rank covers its share
only, scaled by the world size so that DDP's gradient averaging hands every INR exactly its own gradient
(the other ranks add exact zeros). After the fit every rank, and rank 0 in particular, holds all INRs.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict

import lightning as L
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, TensorDataset

from big2small.errors import FittingError
from big2small.methods.big2small.coords import FitTarget
from big2small.methods.big2small.losses import frequency_term
from big2small.methods.big2small.networks import BatchedINR
from big2small.methods.big2small.seeds import sampling_seed
from big2small.methods.big2small.settings import FitSettings, LossSettings, StorageSettings
from big2small.methods.big2small.sharding import balanced_shares
from big2small.numerics import DENOMINATOR_FLOOR

# Hidden activations (rows x width x stack) one chunk of a whole-grid INR evaluation may hold: 2^24 floats, 64 MiB
# per hidden layer; every stack of a CIFAR ResNet-20 or -56 fits in one chunk. A chunk's tensors must stay well
# above glibc's largest mmap threshold (32 MiB): below it they come from the heap, which keeps what it is given
# (docs/decisions.md, "Scale and test time").
ACTIVATION_CHUNK_ELEMENTS = 1 << 24
# With gradients on, grids with more hidden activations than this (2^23 floats, 32 MiB per hidden layer) are
# recomputed in backward instead of kept in the graph until then: kept, the activations of every such grid in the
# model are alive at once. Every grid of a CIFAR ResNet-20 or -56 stays below.
RETAINED_ACTIVATION_ELEMENTS = 1 << 23


class INRGroup(nn.Module):
    """The G targets whose INRs share one shape and are stored at `bits` (16: fp16; else codes, storage.py), their
    stack of INRs (`net`), and the zero-padded tables they are fitted to. The tables are buffers: they move with
    the module to the trainer's device once, when the loop starts, and are not checkpointed (they come from the
    model)."""

    coords: torch.Tensor  # (G, N_max, D), zero-padded
    values: torch.Tensor  # (G, N_max, K), zero-padded
    mask: torch.Tensor    # (G, N_max, 1): 1 on real rows

    def __init__(self, targets: list[FitTarget], net: BatchedINR, bits: int) -> None:
        super().__init__()
        self.targets, self.net, self.bits = targets, net, bits
        longest = max(t.coords.shape[0] for t in targets)
        count, dims, outputs = len(targets), targets[0].dims, targets[0].outputs
        coords, values, mask = torch.zeros(count, longest, dims), torch.zeros(count, longest, outputs), \
            torch.zeros(count, longest, 1)
        for g, target in enumerate(targets):
            rows = target.coords.shape[0]
            coords[g, :rows], values[g, :rows], mask[g, :rows] = target.coords, target.values, 1
        self.register_buffer("coords", coords, persistent=False)
        self.register_buffer("values", values, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self.rows = [t.coords.shape[0] for t in targets]  # real rows per target (host integers)
        self.padded = min(self.rows) < longest  # stacks group equal row counts, so usually False

    def predict(self, which: torch.Tensor | None = None) -> torch.Tensor:
        """Every (or the `which`) INR on its whole grid: (g, N_max, K), differentiable, evaluated in row chunks
        (predict_in_chunks) so that a large layer never holds its whole grid's hidden activations."""
        return predict_in_chunks(self.net, self.coords if which is None else self.coords[which], which)

    def quantised_bits(self) -> int | None:
        """What the INRs' forward rounds their weights to when it sees them as stored (None: fp16, no rounding)."""
        return self.bits if self.bits < 16 else None

    def keeping(self, members: list[int]) -> INRGroup:
        """A group of only the INRs at stack rows `members`, with their fitted parameters."""
        net = copy.deepcopy(self.net)
        with torch.no_grad():
            for parameters in (net.weights, net.biases):
                for layer, parameter in enumerate(parameters):
                    parameters[layer] = nn.Parameter(parameter[members].clone())
        return INRGroup([self.targets[g] for g in members], net, self.bits).to(self.coords.device)

    def cost(self, g: int, batch_size: int | None) -> float:
        rows = int(self.rows[g]) if batch_size is None else min(batch_size, int(self.rows[g]))
        return float(rows * sum(i * o for i, o in self.net.sizes))


class INRFitModule(L.LightningModule):
    progress_label = "fitting INRs"  # names the progress bar (logs.PhaseProgressBar)

    def __init__(self, groups: list[INRGroup], fit: FitSettings, loss: LossSettings, storage: StorageSettings,
                 seed: int) -> None:
        super().__init__()
        self.groups = nn.ModuleList(groups)  # the INRs and their tables: on the trainer's device from setup on
        self.fit_settings, self.loss_settings, self.storage = fit, loss, storage
        self.seed = seed
        # Per group, the INRs this rank fits: as host integers (loops, names) and as an index on the device.
        self.owned: list[list[int]] = [list(range(len(g.targets))) for g in groups]
        self.owned_index: list[torch.Tensor] = [torch.tensor(owned, dtype=torch.long) for owned in self.owned]

    def retire(self, keys: set[str]) -> None:
        """The INRs of targets `keys` are no longer fitted: the steps from here on leave them out."""
        self.owned = [[g for g in owned if group.targets[g].key not in keys]
                      for group, owned in zip(self.groups, self.owned, strict=True)]
        self.owned_index = [torch.tensor(owned, dtype=torch.long, device=self.device) for owned in self.owned]

    # ------------------------------------------------------------ sharing across ranks
    def setup(self, stage: str) -> None:
        world, rank = self.trainer.world_size, self.trainer.global_rank
        items = [(gi, g) for gi, group in enumerate(self.groups) for g in range(len(group.targets))]
        costs = [self.groups[gi].cost(g, self.fit_settings.batch_size) for gi, g in items]
        mine = set(balanced_shares(costs, world)[rank])
        self.owned = [[g for k, (gi, g) in enumerate(items) if gi == group_index and k in mine]
                      for group_index in range(len(self.groups))]
        self.world_size = world

    def on_fit_start(self) -> None:
        # The indices go to the device once, after the module; a step then copies nothing from the host.
        self.owned_index = [torch.tensor(owned, dtype=torch.long, device=self.device) for owned in self.owned]
        if self.fit_settings.compile:
            for group in self.groups:
                group.net.forward = torch.compile(group.net.forward, dynamic=False)

    def train_dataloader(self) -> DataLoader:
        # One dummy item per step: coordinates come from the targets inside training_step.
        return DataLoader(TensorDataset(torch.arange(self.fit_settings.steps)), batch_size=1)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        quantise = self.global_step >= self.fit_settings.steps - self.storage.qat_steps
        for group in self.groups:
            group.net.fake_quant = group.quantised_bits() if quantise else None

    # ------------------------------------------------------------ the loss
    def training_step(self, batch, batch_idx):
        # Touch every parameter so DDP sees them all used; rows this rank does not own get exact zero gradients.
        total = sum(p.sum() for p in self.parameters()) * 0.0
        squared_error = squared_target = torch.zeros((), device=self.device)
        count = 0
        for group, owned, which in zip(self.groups, self.owned, self.owned_index, strict=True):
            if not owned:
                continue
            per_inr, error, target_energy = self._group_loss(group, owned, which)
            _raise_on_nan(per_inr, group.targets, owned)
            total = total + per_inr.sum() * getattr(self, "world_size", 1)
            squared_error, squared_target = squared_error + error, squared_target + target_energy
            count += len(owned)
        self.log("loss", total.detach() / max(count, 1) / getattr(self, "world_size", 1), prog_bar=True)
        self.log("rel_err", torch.sqrt(squared_error / squared_target.clamp_min(DENOMINATOR_FLOOR)), prog_bar=True)
        return total

    def _group_loss(self, group: INRGroup, owned: list[int], which: torch.Tensor):
        everything = len(owned) == len(group.targets)  # then skip copying the stacked tables
        subset = None if everything else which
        coords_table = group.coords if everything else group.coords[which]
        values_table = group.values if everything else group.values[which]
        targets = [group.targets[g] for g in owned]
        batch = self.fit_settings.batch_size
        if batch is None or batch >= group.coords.shape[1]:  # the whole grid
            predicted = predict_in_chunks(group.net, coords_table, subset)
            values = values_table
            mask = None if not group.padded else group.mask if everything else group.mask[which]
            views = [whole_grid_views(t) for t in targets]
        else:
            bands = self.loss_settings.frequency_weight > 0  # the frequency loss needs whole matrix rows
            index = self._sample(group, owned, bands)  # (g, B)
            coords = torch.gather(coords_table, 1, index[..., None].expand(-1, -1, group.coords.shape[2]))
            values = torch.gather(values_table, 1, index[..., None].expand(-1, -1, group.values.shape[2]))
            predicted = predict_in_chunks(group.net, coords, subset)  # a band can be as large as a grid
            mask = None
            views = [band_views(t, batch) for t in targets] if bands else []
        difference = predicted - values
        squared = difference.square() if mask is None else difference.square() * mask
        rows = values.shape[1] * values.shape[2] if mask is None else mask.sum(dim=(1, 2)) * values.shape[2]
        per_inr = squared.sum(dim=(1, 2)) / rows
        if self.loss_settings.frequency_weight > 0:
            per_inr = per_inr + self.loss_settings.frequency_weight * frequency_terms(
                difference, views, self.loss_settings.gamma)
        target_energy = values.square().sum() if mask is None else (values.square() * mask).sum()
        return per_inr, squared.detach().sum(), target_energy

    def _sample(self, group: INRGroup, owned: list[int], bands: bool) -> torch.Tensor:
        """(g, batch_size) row indices per INR: uniform draws, or (bands) one contiguous band of rows starting at
        an output channel of its layer. A generator per INR and step (seeds.py), on the trainer's device: the draw
        depends on neither the stack, the rank nor a resume (a device's generator draws other numbers than the
        CPU's from the same seed)."""
        batch = self.fit_settings.batch_size
        rows = []
        for g in owned:
            target = group.targets[g]
            generator = torch.Generator(device=self.device)
            generator.manual_seed(sampling_seed(self.seed, target.ordinal, self.global_step))
            if bands:
                per_channel = channel_rows(target)
                first = torch.randint(0, (group.rows[g] - batch) // per_channel + 1, (1,), generator=generator,
                                      device=self.device)
                rows.append(first * per_channel + torch.arange(batch, device=self.device))
            else:
                rows.append(torch.randint(0, group.rows[g], (batch,), generator=generator, device=self.device))
        return torch.stack(rows)

    def configure_optimizers(self):
        return adam_with_cosine_decay(self.parameters(), self.fit_settings.lr, self.fit_settings.steps)


# A matrix the frequency loss transforms, as (first table row, table rows, matrix rows): rows first..first+count of
# an INR's prediction reshaped to (matrix rows, count * K / matrix rows).
MatrixView = tuple


def channel_rows(target: FitTarget) -> int:
    """Table rows per output channel of a single-layer target (a row of its (C_out, C_in*kh*kw) matrix)."""
    segment = target.segments[0]
    return segment.count // segment.shape[0]


def whole_grid_views(target: FitTarget) -> list[MatrixView]:
    return [(s.start, s.count, s.shape[0]) for s in target.segments]


def band_views(target: FitTarget, batch: int) -> list[MatrixView]:
    """The band of `batch` rows from an output channel on (_sample): its whole channels as a matrix, or, when one
    channel is longer than the band, the band as one matrix row."""
    channels = batch // channel_rows(target)
    return [(0, channels * channel_rows(target), channels)] if channels else [(0, batch, 1)]


def frequency_terms(difference: torch.Tensor, views: list[list[MatrixView]], gamma: float) -> torch.Tensor:
    """The frequency term of each INR's (predicted - target) difference (g, N, K), (g,). INRs with one matrix of
    one layout (the usual case in a stack) take one batched FFT; an INR holding several layers (scope=model)
    averages its own."""
    terms: list[torch.Tensor | None] = [None] * len(views)
    batches: dict[MatrixView, list[int]] = defaultdict(list)
    for k, matrices in enumerate(views):
        if len(matrices) == 1:
            batches[matrices[0]].append(k)
        else:
            terms[k] = torch.stack([frequency_term(
                difference[k, first : first + count].reshape(rows, -1), gamma)
                for first, count, rows in matrices]).mean()
    for (first, count, rows), members in batches.items():
        part = difference if len(members) == len(views) else difference[members]  # all: a view, no copy
        batched = frequency_term(part[:, first : first + count].reshape(len(members), rows, -1), gamma)
        for k, term in zip(members, batched, strict=True):
            terms[k] = term
    return torch.stack(terms)


def predict_in_chunks(net: BatchedINR, coords: torch.Tensor, which: torch.Tensor | None,
                      max_elements: int | None = None) -> torch.Tensor:
    """net(coords, which) on a whole grid (or a sampled batch). With gradients on, a grid whose hidden activations exceed
    RETAINED_ACTIVATION_ELEMENTS is evaluated under torch.utils.checkpoint in row chunks (backward recomputes one
    chunk at a time), so the graph keeps no large grid's activations; without gradients (decoding) large grids are
    evaluated in the same chunks. Memory then holds one chunk's hidden activations instead of the whole grid's."""
    stack, rows, _ = coords.shape
    widest = max(fan_out for _, fan_out in net.sizes)
    chunk = max(1, (max_elements or ACTIVATION_CHUNK_ELEMENTS) // (stack * widest))
    if not torch.is_grad_enabled():  # decoding: nothing to recompute
        if chunk >= rows:
            return net(coords, which)
        return torch.cat([net(coords[:, start : start + chunk], which) for start in range(0, rows, chunk)], dim=1)
    if stack * rows * widest <= RETAINED_ACTIVATION_ELEMENTS:
        return net(coords, which)
    return torch.cat([checkpoint(net, coords[:, start : start + chunk], which, use_reentrant=False)
                      for start in range(0, rows, chunk)], dim=1)


def adam_with_cosine_decay(parameters, lr: float, steps: int) -> dict:
    """Lightning's optimizer config: Adam, its lr decayed to 0 over `steps` on a half cosine."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}




def _raise_on_nan(per_inr_loss: torch.Tensor, targets: list[FitTarget], owned: list[int]) -> None:
    bad = ~torch.isfinite(per_inr_loss.detach())
    if bad.any():
        key = targets[owned[int(bad.nonzero()[0])]].key
        raise FittingError(f"INR fitting diverged (non-finite loss) on {key}; lower fit.lr")
