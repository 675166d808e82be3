"""`nncodec`: the MPEG Neural Network Coding standard (ISO/IEC 15938-17) through Fraunhofer HHI's `nncodec` package.

The replaced weights (conv and linear, as for `quant`) are coded as one NNC bitstream: uniform scalar quantisation
with one step size per tensor set by the quantisation parameter qp (step = (k + qp mod k) 2^(floor(qp / k) - d),
k = 2^d, d = `qp_density`: qp + k doubles the step), dependent (trellis-coded) quantisation when
`dependent_quantization` (and, with `opt_qp`, nncodec's rule that scales each tensor's qp by its share of the
weights and its spread), then DeepCABAC entropy coding. Only NNC's data-free tools are used: no local scaling
adaptation, batch-norm folding, inference-optimised qp, fine-tuning or sparsification, so no image is looked at.

The artifact is our safetensors artifact holding the bitstream as one uint8 tensor; the header names each layer
with its shape. Each tensor's qp, the density and the quantiser are in the bitstream; the settings are in the
header for the record, as in every artifact, and each layer's qp as asked of the encoder (before `opt_qp`'s rule)
in metrics.json. Inside the bitstream the tensors are called "0", "1", ... in the header's order, so names are
not stored twice. The model is rebuilt from the bitstream alone, and a stream that decodes to other tensors or
shapes than the header lists is refused.

Size knob: `qp` (lower = finer steps = more bytes; nncodec's own default is -32). When `target_ratio` is set it
takes precedence: the smallest qp whose artifact meets the target is found by bisection over the integer qp range,
then the bytes left go one qp step at a time to single tensors, largest first, while the target still holds.

Needs the optional package: `pip install .[nnc]` (see docs/decisions.md). It is imported only when a compressor of
this kind is made or an artifact of it is decoded, so nothing else depends on it. Decoding goes through nncodec's
own parser: the file's checksum shows damage, and a stream that decodes to anything but the listed tensors is
refused, but the parser itself (C++) is not hardened against forged streams.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import torch
from torch import nn

from big2small.codec import Compressed
from big2small.errors import ConfigError, first_line
from big2small.graph.weights import set_parameter
from big2small.methods.base import Compressor
from big2small.methods.budget import (
    artifact_bytes,
    bisect_largest,
    budget_bytes,
    original_bytes,
    report_landing,
)
from big2small.methods.registry import register
from big2small.values import as_integer

MISSING = "nncodec is not installed; pip install .[nnc]"
MAX_QP_DENSITY = 7  # the standard's qp_density is a 3-bit field


def qp_range(qp_density: int) -> tuple[int, int]:
    """The integer qp values NNC signals for this density (a (6 + qp_density)-bit signed field)."""
    half = 2 ** (5 + qp_density)
    return -half, half - 1


def load_nnc():
    """nncodec's coding module, imported on first use; a missing package is a one-line ConfigError."""
    try:
        from nncodec import nnc
    except ModuleNotFoundError as error:
        if (error.name or "nncodec").split(".")[0] == "nncodec":
            raise ConfigError(MISSING) from None
        raise ConfigError(f"nncodec cannot be imported ({first_line(error)}); pip install .[nnc]") from None
    except ImportError as error:
        raise ConfigError(f"nncodec cannot be imported ({first_line(error)}); pip install .[nnc]") from None
    return nnc


@register
class NNCodec(Compressor):
    """MPEG NNC (ISO/IEC 15938-17) via nncodec: uniform quantisation at qp, optional trellis-coded (dependent)
    quantisation, DeepCABAC. qp: the quantisation parameter (used when target_ratio is None); qp_density: qp steps
    per doubling of the step size are 2^qp_density; dependent_quantization: NNC's trellis-coded quantisation;
    opt_qp: nncodec's data-free per-tensor qp rule (coarser steps for tensors with a large share of the weights);
    target_ratio, when set, takes precedence: qp is searched so the artifact meets it."""

    name = "nncodec"
    ARTIFACT_TENSORS = {"bitstream": torch.uint8}
    # The bitstream carries each tensor's qp, the density and the quantiser; the header only names the layers.
    META_FIELDS = {}
    LAYER_FIELDS = {}

    def __init__(self, qp: int | None = -32, qp_density: int = 2, dependent_quantization: bool = True,
                 opt_qp: bool = False, target_ratio=None, layer_types=("conv", "linear"), min_params=0) -> None:
        super().__init__(target_ratio, layer_types, min_params)
        self.qp_density = as_integer("nncodec: qp_density", qp_density, 0, MAX_QP_DENSITY)
        low, high = qp_range(self.qp_density)
        if qp is None and self.target_ratio is None:
            raise ConfigError(f"nncodec: set qp ({low}..{high}) or target_ratio")
        qp = None if qp is None else as_integer("nncodec: qp", qp, low, high)
        self.qp = None if self.target_ratio is not None else qp  # unused then, recorded as null
        for key, value in (("dependent_quantization", dependent_quantization), ("opt_qp", opt_qp)):
            if not isinstance(value, bool):
                raise ConfigError(f"nncodec: {key} must be true or false (got {value!r})")
        self.dependent_quantization, self.opt_qp = dependent_quantization, opt_qp
        load_nnc()

    def settings(self) -> dict:
        return {**super().settings(), "qp": self.qp, "qp_density": self.qp_density,
                "dependent_quantization": self.dependent_quantization, "opt_qp": self.opt_qp}

    def fit(self, model: nn.Module, *, data=None, trainer_factory=None) -> Compressed:
        weights = self.select(model)
        if self.target_ratio is None:
            qps = {name: self.qp for name in weights}
        else:
            qps = self.qps_for_target(weights)
        compressed = self.pack(weights, qps)
        compressed.layer_stats = {name: {"qp": qp} for name, qp in qps.items()}
        report_landing(self.name, original_bytes(weights) / artifact_bytes(compressed), self.target_ratio,
                       f"nncodec's qp moves the step by 2^(1/{2 ** self.qp_density}) per unit")
        return compressed

    def pack(self, weights: dict[str, torch.Tensor], qps: dict[str, int]) -> Compressed:
        arrays = {str(index): w.numpy().astype(np.float32) for index, w in enumerate(weights.values())}
        per_tensor = {str(index): np.int32(qps[name]) for index, name in enumerate(weights)}
        nnc = load_nnc()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nncodec prints notes (clipped qps) even when quiet
                stream = nnc.compress(
                    arrays, bitstream_path=None, qp=int(next(iter(qps.values()))), qp_density=self.qp_density,
                    qp_per_tensor=per_tensor, use_dq=self.dependent_quantization, opt_qp=self.opt_qp,
                    row_skipping=True, return_bitstream=True, verbose=False)
        except SystemExit as error:  # nncodec reports what it cannot code by exiting
            raise RuntimeError(f"nncodec could not encode the weights: {first_line(error)}") from None
        layers = [{"name": name, "shape": list(w.shape)} for name, w in weights.items()]
        meta = {"replaced": list(weights), "layers": layers}
        bitstream = torch.frombuffer(bytearray(stream), dtype=torch.uint8).clone()
        return Compressed(self.name, self.settings(), {"bitstream": bitstream}, meta)

    def qps_for_target(self, weights: dict[str, torch.Tensor]) -> dict[str, int]:
        budget = budget_bytes(original_bytes(weights), self.target_ratio)
        low, high = qp_range(self.qp_density)

        def fits(qps: dict[str, int]) -> bool:
            return artifact_bytes(self.pack(weights, qps)) <= budget

        # Bytes fall as qp rises; bisect over -qp for the smallest qp that fits.
        finest = bisect_largest(lambda negated: fits(dict.fromkeys(weights, -int(negated))), -high, -low,
                                integer=True)
        qps = dict.fromkeys(weights, high if finest is None else -int(finest))
        if finest is None:
            return qps
        for name in sorted(weights, key=lambda n: -weights[n].numel()):
            if qps[name] > low and fits({**qps, name: qps[name] - 1}):
                qps[name] -= 1
        return qps

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, range]:
        # A bound, not a size: nncodec keeps levels below 2^31, about 8 coded bytes per weight at worst (its finest
        # qp); twice that plus NNC's unit headers is never reached by a real stream.
        weights = sum(math.prod(layer["shape"]) for layer in meta["layers"])
        return {"bitstream": range(1, 16 * weights + 64 * len(meta["layers"]) + 4096)}

    @classmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        nnc = load_nnc()
        stream = bytearray(compressed.tensors["bitstream"].numpy().tobytes())
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                decoded = nnc.decompress(stream, verbose=False)
        except SystemExit as error:  # nncodec reports unreadable streams by exiting
            raise ValueError(f"nncodec could not decode the bitstream: {first_line(error)}") from None
        layers = compressed.meta["layers"]
        if sorted(decoded) != sorted(str(index) for index in range(len(layers))):
            raise ValueError(f"the bitstream holds tensors {sorted(decoded)[:5]}, its header lists {len(layers)}")
        for index, layer in enumerate(layers):
            values = np.asarray(decoded[str(index)], dtype=np.float32)
            if list(values.shape) != layer["shape"]:
                raise ValueError(f"the bitstream's tensor for {layer['name']} has shape {list(values.shape)}, "
                                 f"its header says {layer['shape']}")
            set_parameter(model, layer["name"], torch.from_numpy(values.copy()))
        return model
