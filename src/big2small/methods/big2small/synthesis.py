"""Synthetic inputs for data-free refinement; no data module is ever touched.

`bn_stats` (as in ZeroQ): Gaussian noise optimised until every BatchNorm layer's batch mean and standard deviation
match its stored running statistics; on a classifier, `class_weight` adds a cross-entropy that assigns image i to
class i mod classes (as in GDFQ and Genie), so the images cover every class; with `input_jitter` each step sees the
images rolled by a few pixels and mirrored at random (as DeepInversion jitters its images). `noise`: the Gaussian
noise as is. The optimisation is a Lightning fit whose only parameters are the images (the model is frozen), so it runs on the
trainer's device and shows a progress bar named for its phase.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from big2small.methods.big2small.fitting import adam_with_cosine_decay
from big2small.methods.big2small.settings import RefinementSettings

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# Images are optimised in chunks of this many: each chunk's batch statistics are matched on their own (as a training
# batch's would be), memory stays bounded, and time grows linearly with num_inputs (docs/decisions.md).
CHUNK = 128


def synthetic_inputs(model: nn.Module, shape: list[int], settings: RefinementSettings, seed: int,
                     trainer_factory) -> torch.Tensor:
    """`settings.num_inputs` inputs of `shape` for `model` (left as it was), on the CPU."""
    images = torch.randn(settings.num_inputs, *shape, generator=torch.Generator().manual_seed(seed))
    if settings.inputs == "noise" or settings.input_steps == 0 or not any(
            isinstance(m, NORM_TYPES) for m in model.modules()):
        return images
    module = StatisticsMatching(model, images, settings.input_steps, settings.class_weight, settings.input_precision,
                                settings.input_lr, settings.input_schedule, settings.input_jitter, seed)
    trainer = trainer_factory(max_steps=settings.input_steps, max_epochs=-1, use_distributed_sampler=False,
                              enable_checkpointing=False, devices=1, strategy="auto", num_nodes=1)
    try:
        trainer.fit(module)
    finally:
        module.release()
    return module.images()


class StatisticsMatching(L.LightningModule):
    """Each step moves every chunk of images one Adam step towards the BatchNorm running statistics of `model`.

    Chunks are independent (their own batch statistics, their own Adam moments): each is forwarded and
    backpropagated on its own, so memory holds one chunk's graph at a time.
    """

    progress_label = "synthesising inputs"  # names the progress bar (logs.PhaseProgressBar)

    def __init__(self, model: nn.Module, images: torch.Tensor, steps: int, class_weight: float = 0.0,
                 precision: str = "32", lr: float = 0.1, schedule: str = "constant", jitter: float = 0.0,
                 seed: int = 0) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.steps, self.class_weight, self.precision = steps, class_weight, precision
        self.lr, self.schedule, self.jitter = lr, schedule, jitter
        self.jitter_draws = torch.Generator().manual_seed(seed)  # the jitter's own stream, on the CPU
        self.bf16 = False  # set on the trainer's device (on_fit_start)
        self.chunks = nn.ParameterList(nn.Parameter(chunk.clone()) for chunk in images.split(CHUNK))
        self.model = model.eval()  # a submodule so that it lives on the trainer's device; frozen below
        self.was_trainable = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        self.norms = [m for m in model.modules() if isinstance(m, NORM_TYPES)]
        self.captured: list[torch.Tensor] = []
        self.hooks = [m.register_forward_pre_hook(lambda _m, args: self.captured.append(args[0]))
                      for m in self.norms]

    def train_dataloader(self) -> DataLoader:
        # One item per step; the loader's own generator keeps the global random stream untouched.
        return DataLoader(range(self.steps), batch_size=1, generator=torch.Generator().manual_seed(0))

    def on_fit_start(self) -> None:
        self.bf16 = self.precision == "bf16" or (self.precision == "auto" and native_bf16(self.device))
        if self.bf16:
            self.progress_label = "synthesising inputs (bf16)"

    def train(self, mode: bool = True) -> StatisticsMatching:
        super().train(mode)
        self.model.eval()  # batch statistics are measured, never written into the running ones
        return self

    def training_step(self, batch, batch_idx) -> None:
        optimizer = self.optimizers()
        optimizer.zero_grad()
        total = 0.0
        first = 0
        for images in self.chunks:
            self.captured.clear()
            seen = jittered(images, self.jitter, self.jitter_draws) if self.jitter else images
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                output = self.model(seen).float()
            loss = sum(statistics_gap(x.float(), m) for x, m in zip(self.captured, self.norms, strict=False))
            if self.class_weight > 0 and output.dim() == 2:
                loss = loss + self.class_weight * assigned_class_loss(output, first)
            first += len(images)
            self.manual_backward(loss)
            total += float(loss.detach())
        optimizer.step()
        if (schedule := self.lr_schedulers()) is not None:
            schedule.step()
        self.log("bn_gap", total / len(self.chunks), prog_bar=True)

    def configure_optimizers(self):
        if self.schedule == "cosine":
            return adam_with_cosine_decay(self.chunks.parameters(), self.lr, self.steps)
        return torch.optim.Adam(self.chunks.parameters(), lr=self.lr)

    def images(self) -> torch.Tensor:
        return torch.cat([chunk.detach().cpu() for chunk in self.chunks])

    def release(self) -> None:
        """Hand the model back as it was: no hooks, its parameters' requires_grad restored."""
        for hook in self.hooks:
            hook.remove()
        for p, trainable in zip(self.model.parameters(), self.was_trainable, strict=True):
            p.requires_grad_(trainable)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX (any
    other CPU emulates bf16, more slowly than it computes fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
        return any(probe is not None and probe() for probe in probes)
    return False


def jittered(images: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """A batch of images (N, C, H, W) rolled by one random whole number of pixels in [-p, p] down and one across,
    p = `share` of the shorter side rounded (what leaves one edge comes back at the other), then mirrored left to
    right with probability one half; inputs of other shapes as they are. Differentiable in the images."""
    if images.dim() != 4:
        return images
    pixels = round(share * min(images.shape[2:]))
    down, across = (int(v) for v in torch.randint(-pixels, pixels + 1, (2,), generator=generator))
    seen = torch.roll(images, shifts=(down, across), dims=(2, 3))
    return seen.flip(3) if bool(torch.rand((), generator=generator) < 0.5) else seen


def assigned_class_loss(logits: torch.Tensor, first: int) -> torch.Tensor:
    """Cross-entropy of each image to its assigned class: image `first + j` of the whole set gets class
    (first + j) mod classes."""
    classes = torch.arange(first, first + len(logits), device=logits.device) % logits.shape[1]
    return nn.functional.cross_entropy(logits, classes)


def statistics_gap(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """How far the batch's per-channel mean and std at `norm`'s input are from its running statistics."""
    mean, var = channel_moments(x)
    std = var.add(norm.eps).sqrt()
    return torch.linalg.vector_norm(mean - norm.running_mean) + \
        torch.linalg.vector_norm(std - norm.running_var.add(norm.eps).sqrt())


def channel_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel's mean and (biased) variance over a batch `x` of (N, C, ...), from sums over each (input,
    channel) row, whose values lie together in memory: on a CPU faster, forward and backward, than torch.var_mean
    over dims (0, 2, 3) (benchmarks/step_speed.py). Variance as E[x^2] - E[x]^2, which loses precision only where a
    channel's mean is thousands of times its std."""
    rows = x.flatten(2) if x.dim() > 2 else x.unsqueeze(2)
    count = rows.shape[0] * rows.shape[2]
    mean = rows.sum(dim=2).sum(dim=0) / count
    return mean, (torch.linalg.vecdot(rows, rows).sum(dim=0) / count - mean * mean).clamp_min(0)
