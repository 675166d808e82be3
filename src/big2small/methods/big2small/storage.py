"""How INR parameters are stored: fp16, or b-bit weight codes (b = 8, 6 or 4) with one fp16 scale per output
column (biases fp16).

Codes are symmetric integers in [-(2^(b-1) - 1), 2^(b-1) - 1] times their column's scale max |w| / (2^(b-1) - 1).
8-bit codes are stored as int8 values; 6- and 4-bit codes are bit-packed per INR (encodings/bitpack.py).
`fake_quantize` is the same rounding with a straight-through gradient, used in the quantisation-aware fitting
steps so the INR learns weights that survive their storage.
"""

from __future__ import annotations

import torch

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint

# The artifact tensor that holds the weight codes of each code width.
CODE_TENSORS = {8: "inr_int8", 6: "inr_packed", 4: "inr_packed"}


def code_dtype(bits: int) -> torch.dtype:
    """The element type of the code tensor: int8 codes as they are, narrower codes as packed bytes."""
    return torch.int8 if bits == 8 else torch.uint8


def levels(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def column_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """(..., fan_in, fan_out) -> (..., 1, fan_out) fp16-representable scales (max |w| / levels, never zero)."""
    scale = weight.detach().abs().amax(dim=-2, keepdim=True) / levels(bits)
    return scale.clamp_min(1e-7).to(torch.float16).float().clamp_min(6e-8)


def quantize(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(integer codes as int64, fp16 column scales)."""
    scale = column_scale(weight, bits)
    codes = torch.round(weight / scale).clamp(-levels(bits), levels(bits)).long()
    return codes, scale.to(torch.float16)


def dequantize(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale.float()


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    scale = column_scale(weight, bits)
    rounded = torch.round(weight / scale).clamp(-levels(bits), levels(bits)) * scale
    return weight + (rounded - weight).detach()


def stored_counts(layer_sizes: list[tuple[int, int]], bits: int) -> tuple[int, int]:
    """(fp16 values, code tensor elements) one INR stores."""
    if bits == 16:
        return sum(i * o + o for i, o in layer_sizes), 0
    weights = sum(i * o for i, o in layer_sizes)
    return sum(2 * o for _, o in layer_sizes), weights if bits == 8 else packed_size(weights, bits)


def stored_bytes(layer_sizes: list[tuple[int, int]], bits: int) -> int:
    """Bytes of one INR with these (fan_in, fan_out) linear layers."""
    halves, codes = stored_counts(layer_sizes, bits)
    return 2 * halves + codes


def pack(net, bits: int) -> dict[str, torch.Tensor]:
    """A batched INR's parameters as storage rows, INR-major: {"fp16": (G, n16)[, "codes": (G, n_codes)]}."""
    halves, codes = [], []
    for weight, bias in zip(net.weights, net.biases, strict=False):
        weight, bias = weight.detach(), bias.detach()
        count = weight.shape[0]
        if bits == 16:
            halves += [weight.reshape(count, -1).half(), bias.reshape(count, -1).half()]
        else:
            q, scale = quantize(weight, bits)
            codes.append(q.reshape(count, -1))
            halves += [scale.reshape(count, -1), bias.reshape(count, -1).half()]
    out = {"fp16": torch.cat(halves, dim=1)}
    if codes:
        q = torch.cat(codes, dim=1)
        out["codes"] = q.to(torch.int8) if bits == 8 else torch.stack([pack_uint(row + levels(bits), bits) for row in q])
    return out


def unpack(net, fp16: torch.Tensor, codes: torch.Tensor | None, bits: int) -> None:
    """Inverse of pack: load (G, ...) storage rows into a batched INR of the right shape."""
    if bits < 16:
        count = sum(w.shape[1] * w.shape[2] for w in net.weights)
        codes = codes.long() if bits == 8 else torch.stack([unpack_uint(row, bits, count) - levels(bits)
                                                            for row in codes])
    half_at = code_at = 0
    with torch.no_grad():
        for weight, bias in zip(net.weights, net.biases, strict=False):
            count, fan_in, fan_out = weight.shape
            if bits == 16:
                weight.copy_(fp16[:, half_at : half_at + fan_in * fan_out].float().reshape(weight.shape))
                half_at += fan_in * fan_out
            else:
                q = codes[:, code_at : code_at + fan_in * fan_out].reshape(weight.shape)
                scale = fp16[:, half_at : half_at + fan_out].reshape(count, 1, fan_out)
                weight.copy_(dequantize(q, scale))
                code_at, half_at = code_at + fan_in * fan_out, half_at + fan_out
            bias.copy_(fp16[:, half_at : half_at + fan_out].float().reshape(bias.shape))
            half_at += fan_out
    if half_at != fp16.shape[1] or (codes is not None and code_at != codes.shape[1]):
        raise ValueError("stored INR parameters do not match the INR's shape")
