"""Two other places an INR might pay, per layer at equal bytes: a residual INR on top of coarse codes, and an INR
that predicts the codes' probabilities (a learned entropy-coding prior).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/inr_residual_prior.py [--model resnet20|resnet32] [--bits 4,2,1]
        [--shares 0.1,0.25] [--steps 500] [--layers N] [--prior-width 16]

Layers: the conv and linear weights Big2Small replaces (`Big2SmallCompressor().select`), all of them (every layer
here, the stem and the classifier included, whatever storage.codes_below would do). For each layer and budget of b
bits per weight (about each layer's share at 8x, 16x, 32x for b = 4, 2, 1), B = b x weights / 8 bytes.

Codes: every option of the repository's layer codes (`weight_codes_at_levels`, every bits in CODE_CHOICES at rate
levels 0..RATE_LEVELS), each counted as `WeightCodes.stored_size(True)` bytes (the rANS stream or the packed codes,
the smaller) + 2 bytes of fp16 scale per output channel. "Best codes at <= X bytes" is the least squared error
option of at most X bytes; "none" when even the cheapest does not fit.

1. Residual INR. For each INR share s, the codes get the best option at <= (1 - s) B bytes and an INR is fitted to
   the residual (weight - codes' values), standardised (its fp32 mean and std: 8 bytes). The INR is the repository's
   own network (`networks.build_network` with the default `INRSettings`: SIREN, omega0 30, 2 hidden layers, unit
   `kernel`: coordinates (o, i), the kh*kw kernel values as outputs), as wide as fits in s B bytes (at least
   INRSettings.min_width, else no candidate). Its bytes: every parameter (weights and biases) at 8 bits, one byte
   each, + an fp16 scale per parameter tensor + the 8 bytes of mean/std. Fitted for --steps full-batch Adam steps
   at FitSettings' lr (3e-3, half-cosine decay to 0, as the repository fits) on plain MSE of the standardised
   residual, then every parameter tensor is rounded to 8-bit symmetric per-tensor codes (round to nearest; no
   quantisation-aware steps) and the error of codes + quantised INR is measured against the weight. Printed: the
   relative error (squared error / layer energy) of the best codes at <= B alone, and of codes + residual INR per
   share (also with the INR unquantised, which shows what its 8-bit rounding cost), and their ratio (< 1: the
   residual INR wins at equal bytes).
2. Learned prior. For the best codes at <= B, their symbols' ideal code length under the per-tensor static
   histogram (what the rANS stream stores: n H(histogram) bits + the table, as varints: lowest symbol, span, one
   count per symbol) against an MLP of the weight's coordinates (unit `weight`: (o, i, kh, kw), linear (o, i), each
   in [-1, 1]) that outputs a categorical distribution over the symbols lo..hi that occur. The MLP is a GELU MLP on
   Fourier features of the coordinates (`coords.fourier_features`, 3 frequencies), the same size for every
   layer: 2 hidden layers of --prior-width (16) units; its output bias starts at the log of the static histogram
   (so training starts from the static model) and it is trained for --steps full-batch Adam steps (lr 3e-3,
   half-cosine) on cross-entropy. Its cost: sum(-log2 p(code_i | coord_i)) bits with p evaluated from the 8-bit
   per-tensor quantised parameters + those parameters at one byte each + an fp16 scale per tensor + 2 bytes for
   lo and span. Printed: bits per weight of both, and the saving in bytes (negative: the prior costs more).

Seeds are fixed per layer (torch.manual_seed and the INR's init seed), so a run is deterministic. The last table
gives per budget b: on how many layers the residual INR beats codes alone at each share (of the layers where the
candidate exists), how many of those wins spend no more bytes in all than the codes alone actually store (the
rest spend bytes the codes alone leave unused: no code option lies between their bytes and B), how many beat the
codes' convex hull at the same total bytes, the least ratio, and the learned prior's total saving over the model (all layers, and keeping
it only where it saves).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from big2small_common import CIFAR_CHECKPOINTS, cifar_resnet, setup
from torch import nn
from torch.nn import functional as F

from big2small.encodings.varints import write_varint
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.big2small.coords import entry_layout, fourier_features, grid
from big2small.methods.big2small.layer_codes import (
    CODE_CHOICES,
    RATE_LEVELS,
    TERNARY,
    code_limit,
    weight_codes_at_levels,
)
from big2small.methods.big2small.networks import build_network, layer_sizes
from big2small.methods.big2small.settings import FitSettings, INRSettings

FP16_SCALE_BYTES = 2  # per output channel of the codes, and per parameter tensor of an 8-bit quantised MLP
MEAN_STD_BYTES = 8    # the residual's fp32 mean and std
PRIOR_HEADER_BYTES = 2  # the prior's lowest symbol and span
PRIOR_FREQUENCIES = 3


def code_options(weight: torch.Tensor) -> list[dict]:
    """Every code option of the layer: its name, total stored bytes (codes + fp16 scales), squared error, codes."""
    options = []
    for bits in CODE_CHOICES:
        for level, coded in weight_codes_at_levels(weight, bits, list(range(RATE_LEVELS + 1))).items():
            coding, size = coded.stored_size(True)
            options.append({"name": f"{'t' if bits == TERNARY else bits}b r{level}", "coding": coding,
                            "bytes": size + FP16_SCALE_BYTES * weight.shape[0],
                            "error": float(((coded.values() - weight) ** 2).sum()), "codes": coded})
    return options


def best_codes(options: list[dict], budget: float) -> dict | None:
    fitting = [option for option in options if option["bytes"] <= budget]
    return min(fitting, key=lambda option: option["error"]) if fitting else None


def hull_error(options: list[dict], size: float) -> float:
    """The least error the codes reach at `size` bytes on the lower convex hull of their (bytes, error) options,
    i.e. interpolated between the two options around it (what splitting the channels between them would about
    give); the least error of all options beyond the largest; inf below the smallest."""
    points = sorted((option["bytes"], option["error"]) for option in options)
    hull: list[tuple[float, float]] = []
    for x, y in points:
        if hull and y >= hull[-1][1]:
            continue  # no better than a cheaper option
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (x - hull[-2][0]) >= \
                (y - hull[-2][1]) * (hull[-1][0] - hull[-2][0]):
            hull.pop()
        hull.append((x, y))
    if size < hull[0][0]:
        return math.inf
    for (x0, y0), (x1, y1) in zip(hull, hull[1:], strict=False):
        if x0 <= size <= x1:
            return y0 + (y1 - y0) * (size - x0) / (x1 - x0)
    return hull[-1][1]


def quantised_bytes(parameters: list[torch.Tensor]) -> int:
    """One byte per parameter + an fp16 scale per tensor (8-bit symmetric per-tensor codes)."""
    return sum(p.numel() for p in parameters) + FP16_SCALE_BYTES * len(parameters)


def quantise_(parameters: list[torch.Tensor]) -> None:
    """Round every tensor in place to 8-bit symmetric per-tensor codes (scale max |p| / 127, fp16), nearest."""
    with torch.no_grad():
        for p in parameters:
            scale = (p.abs().max() / 127).half().float().clamp_min(6e-8)
            p.copy_(torch.round(p / scale).clamp(-127, 127) * scale)


def train_full_batch(parameters: list[torch.Tensor], loss, steps: int, lr: float) -> None:
    """`steps` full-batch Adam steps on `loss()` at `lr`, decayed to 0 on a half cosine (as the repository fits)."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()
        schedule.step()


def inr_params_bytes(settings: INRSettings, dims: int, outputs: int, width: int) -> int:
    sizes = layer_sizes(settings, dims, outputs, width)
    return sum(i * o + o for i, o in sizes) + FP16_SCALE_BYTES * 2 * len(sizes) + MEAN_STD_BYTES


def widest_inr(settings: INRSettings, dims: int, outputs: int, budget: float) -> int | None:
    width = None
    for candidate in range(settings.min_width, settings.max_width + 1):
        if inr_params_bytes(settings, dims, outputs, candidate) > budget:
            break
        width = candidate
    return width


def residual_inr(weight: torch.Tensor, codes: dict, budget: float, steps: int, lr: float, seed: int) -> dict | None:
    """Codes + an INR of the residual in `budget` INR bytes: the errors with the INR in fp32 and 8-bit, its width."""
    settings = INRSettings()
    entries, outputs = entry_layout(weight.shape, settings.unit)
    coords = grid(entries)
    width = widest_inr(settings, coords.shape[1], outputs, budget)
    if width is None:
        return None
    base = codes["codes"].values()
    residual = weight - base
    mean, std = float(residual.mean()), float(residual.std()) or 1.0
    target = ((residual - mean) / std).reshape(-1, outputs)[None]
    torch.manual_seed(seed)
    net = build_network(settings, coords.shape[1], outputs, width, [seed])
    parameters = [*net.weights, *net.biases]
    inputs = coords[None]
    train_full_batch(parameters, lambda: F.mse_loss(net(inputs), target), steps, lr)

    def error() -> float:
        with torch.no_grad():
            rebuilt = base + (net(inputs)[0] * std + mean).reshape(weight.shape)
        return float(((rebuilt - weight) ** 2).sum())

    unquantised = error()
    quantise_(parameters)
    return {"width": width, "bytes": quantised_bytes(parameters) + MEAN_STD_BYTES, "error_fp32": unquantised,
            "error": error()}


def varint_bytes(value: int) -> int:
    out = bytearray()
    write_varint(value, out)
    return len(out)


class PriorMLP(nn.Module):
    """coordinates -> logits over the symbols: Fourier features, 2 GELU hidden layers, a linear output."""

    def __init__(self, dims: int, width: int, symbols: int, log_histogram: torch.Tensor) -> None:
        super().__init__()
        features = dims * (1 + 2 * PRIOR_FREQUENCIES)
        self.layers = nn.ModuleList([nn.Linear(features, width), nn.Linear(width, width), nn.Linear(width, symbols)])
        with torch.no_grad():  # start at the static model: zero output weights, the log histogram as output bias
            self.layers[-1].weight.zero_()
            self.layers[-1].bias.copy_(log_histogram)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = fourier_features(coords, PRIOR_FREQUENCIES)
        for layer in self.layers[:-1]:
            h = F.gelu(layer(h))
        return self.layers[-1](h)


def learned_prior(codes: dict, width: int, steps: int, lr: float, seed: int) -> dict:
    """The codes' static-histogram ideal bytes against the learned prior's bytes (its code length + parameters)."""
    symbols = codes["codes"].codes.reshape(-1).long()
    low, high = int(symbols.min()), int(symbols.max())
    shifted = symbols - low
    counts = torch.bincount(shifted, minlength=high - low + 1).double()
    n = symbols.numel()
    entropy_bits = float(-(counts[counts > 0] * torch.log2(counts[counts > 0] / n)).sum())
    table = varint_bytes(low + code_limit(codes["codes"].bits)) + varint_bytes(high - low) + sum(varint_bytes(int(c)) for c in counts.tolist())
    static_bytes = entropy_bits / 8 + table
    if high == low:
        return {"static": static_bytes, "prior": math.inf, "symbols": 1, "length": math.inf, "params": 0,
                "length_fp32": math.inf}
    torch.manual_seed(seed)
    coords = grid(list(codes["codes"].codes.shape))
    log_histogram = torch.log((counts + 0.5) / (n + 0.5 * counts.numel())).float()
    net = PriorMLP(coords.shape[1], width, high - low + 1, log_histogram)
    parameters = list(net.parameters())
    train_full_batch(parameters, lambda: F.cross_entropy(net(coords), shifted), steps, lr)

    def length() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(net(coords), shifted, reduction="sum")) / math.log(2) / 8

    unquantised = length()
    quantise_(parameters)
    bits = length()
    params = quantised_bytes(parameters) + PRIOR_HEADER_BYTES
    return {"static": static_bytes, "prior": bits + params, "symbols": high - low + 1, "length": bits,
            "length_fp32": unquantised, "params": params}


def fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="resnet20", choices=sorted(CIFAR_CHECKPOINTS))
    parser.add_argument("--bits", default="4,2,1", help="budgets in bits per weight")
    parser.add_argument("--shares", default="0.1,0.25", help="the residual INR's shares of the budget")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--layers", type=int, default=None, help="only the first N layers")
    parser.add_argument("--prior-width", type=int, default=16)
    args = parser.parse_args()
    setup()
    lr = FitSettings().lr
    budgets = [float(b) for b in args.bits.split(",")]
    shares = [float(s) for s in args.shares.split(",")]
    model = cifar_resnet(args.model)
    weights = list(Big2SmallCompressor().select(model).items())[: args.layers]
    started = time.perf_counter()
    options = {name: code_options(weight) for name, weight in weights}
    print(f"{args.model}: {len(weights)} layers, {args.steps} steps per fit, lr {lr:g}, code options measured in "
          f"{time.perf_counter() - started:.0f} s")
    summary = []
    for bi, b in enumerate(budgets):
        wins: dict[float, list[int]] = {}
        least = {share: math.inf for share in shares}
        for k, share in enumerate(shares):
            print(f"\n{args.model}, b = {b:g} bits per weight, INR share s = {share:g}: codes at <= (1 - s) B + "
                  "a residual INR in s B, against the best codes at <= B and the codes' convex hull at the same "
                  "total bytes (errors: squared error / layer energy)\n")
            print("| layer | weights | B bytes | best codes <= B | their error | coarse codes | INR width, bytes "
                  "| total bytes | codes+INR error (fp32 INR) | / codes <= B | / codes hull at total bytes |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            counted = wins.setdefault(share, [0, 0, 0, 0])
            for index, (name, weight) in enumerate(weights):
                count, energy = weight.numel(), float((weight ** 2).sum())
                budget = b * count / 8
                alone = best_codes(options[name], budget)
                coarse = best_codes(options[name], (1 - share) * budget)
                alone_text = f"{alone['name']} {alone['bytes']} B" if alone else "none"
                alone_error = alone["error"] / energy if alone else None
                line = f"| {name} | {count} | {budget:.0f} | {alone_text} | {fmt(alone_error)} |"
                fitted = None
                if coarse is not None:
                    seed = 1000 * index + 10 * bi + k
                    fitted = residual_inr(weight, coarse, share * budget, args.steps, lr, seed)
                if fitted is None:
                    coarse_text = f"{coarse['name']} {coarse['bytes']} B" if coarse else "none"
                    print(line + f" {coarse_text} | no INR fits | — | — | — | — |")
                    continue
                total = coarse["bytes"] + fitted["bytes"]
                error = fitted["error"] / energy
                ratio = error / alone_error
                hull_ratio = fitted["error"] / hull_error(options[name], total)
                counted[0] += ratio < 1
                counted[1] += hull_ratio < 1
                counted[2] += 1
                counted[3] += ratio < 1 and total <= alone["bytes"]
                least[share] = min(least[share], ratio)
                same = " (same)" if coarse is alone else ""
                print(line + f" {coarse['name']} {coarse['bytes']} B{same} | {fitted['width']}, {fitted['bytes']} B "
                      f"| {total} | {error:.4f} ({fitted['error_fp32'] / energy:.4f}) | {ratio:.3f} | "
                      f"{hull_ratio:.3f} |")
            print(f"\n(done at {time.perf_counter() - started:.0f} s)")
        print(f"\n{args.model}, b = {b:g}: learned prior ({args.prior_width}-wide MLP) against the static "
              "histogram, on the best codes at <= B (bytes: code length + model; prior code length with the "
              "8-bit parameters, in brackets with fp32 ones)\n")
        print("| layer | weights | codes | symbols | stored bytes | static ideal bits/weight | prior code length "
              "bits/weight (fp32) | prior parameter bytes | prior total bits/weight | saving bytes |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        savings, static_total = [], 0.0
        for index, (name, weight) in enumerate(weights):
            count = weight.numel()
            alone = best_codes(options[name], b * count / 8)
            if alone is None:
                print(f"| {name} | {count} | none | — | — | — | — | — | — | — |")
                continue
            row = learned_prior(alone, args.prior_width, args.steps, lr, seed=1000 * index + 7)
            saving = row["static"] - row["prior"]
            static_total += row["static"]
            if math.isfinite(saving):
                savings.append(saving)
            print(f"| {name} | {count} | {alone['name']} ({alone['coding']}) | {row['symbols']} | {alone['bytes']} "
                  f"| {8 * row['static'] / count:.3f} | {fmt(8 * row['length'] / count, 3)} "
                  f"({fmt(8 * row['length_fp32'] / count, 3)}) | {row['params']} | "
                  f"{fmt(8 * row['prior'] / count, 3)} | {fmt(saving, 0)} |")
        summary.append((b, wins, least, sum(savings), sum(max(s, 0.0) for s in savings), sum(s > 0 for s in savings),
                        len(savings), static_total))
        print(f"\n(b = {b:g} done at {time.perf_counter() - started:.0f} s)")
    print(f"\n{args.model}: per budget b and INR share s, the layers where codes + residual INR beat the best codes "
          "at <= B bytes, of those where an INR fits, how many of those wins take no more bytes in all than the "
          "codes alone store, and the wins against the codes' convex hull at the same total bytes; the least "
          "codes+INR / codes <= B; the learned prior's saving over the static histogram\n")
    header = "| b bits/weight |" + "".join(f" s={s:g}: wins vs codes <= B | s={s:g}: of them at <= the codes' "
                                         f"bytes | s={s:g}: wins vs hull |" for s in shares)
    header += "".join(f" s={s:g}: least ratio |" for s in shares)
    header += (" prior saving, all layers (bytes) | prior saving where it saves (bytes) | layers where the prior "
               "saves | static ideal bytes, all layers |")
    print(header)
    print("|---|" + "---|---|---|---|" * len(shares) + "---|---|---|---|")
    for b, wins, least, saving, kept, saved, total, static in summary:
        print(f"| {b:g} |" + "".join(f" {wins[s][0]}/{wins[s][2]} | {wins[s][3]} | {wins[s][1]}/{wins[s][2]} |"
                                     for s in shares)
              + "".join(f" {fmt(least[s], 3)} |" for s in shares)
              + f" {saving:.0f} | {kept:.0f} | {saved}/{total} | {static:.0f} |")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
