"""How INR parameters are stored: fp16, or int8 weights with one fp16 scale per output column (biases fp16).

`fake_quantize` is the same rounding with a straight-through gradient, used in the last fitting steps so the
INR learns weights that survive 8-bit storage.
"""

from __future__ import annotations

import torch

INT8_LEVELS = 127


def column_scale(weight: torch.Tensor) -> torch.Tensor:
    """(..., fan_in, fan_out) -> (..., 1, fan_out) fp16-representable scales (max |w| / 127, never zero)."""
    scale = weight.detach().abs().amax(dim=-2, keepdim=True) / INT8_LEVELS
    return scale.clamp_min(1e-7).to(torch.float16).float().clamp_min(6e-8)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = column_scale(weight)
    codes = torch.round(weight / scale).clamp(-INT8_LEVELS, INT8_LEVELS).to(torch.int8)
    return codes, scale.to(torch.float16)


def dequantize_int8(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return codes.float() * scale.float()


def fake_quantize(weight: torch.Tensor) -> torch.Tensor:
    scale = column_scale(weight)
    rounded = torch.round(weight / scale).clamp(-INT8_LEVELS, INT8_LEVELS) * scale
    return weight + (rounded - weight).detach()


def stored_bytes(layer_sizes: list[tuple[int, int]], bits: int) -> int:
    """Bytes of one INR with these (fan_in, fan_out) linear layers."""
    if bits == 16:
        return sum(2 * (fan_in * fan_out + fan_out) for fan_in, fan_out in layer_sizes)
    return sum(fan_in * fan_out + 2 * fan_out + 2 * fan_out for fan_in, fan_out in layer_sizes)


def pack(net, bits: int) -> dict[str, torch.Tensor]:
    """A batched INR's parameters as storage tensors, INR-major: (G, bytes-ish) per tensor kind."""
    halves, codes = [], []
    for weight, bias in zip(net.weights, net.biases, strict=False):
        weight, bias = weight.detach(), bias.detach()
        count = weight.shape[0]
        if bits == 16:
            halves += [weight.reshape(count, -1).half(), bias.reshape(count, -1).half()]
        else:
            q, scale = quantize_int8(weight)
            codes.append(q.reshape(count, -1))
            halves += [scale.reshape(count, -1), bias.reshape(count, -1).half()]
    out = {"fp16": torch.cat(halves, dim=1)}
    if codes:
        out["int8"] = torch.cat(codes, dim=1)
    return out


def unpack(net, fp16: torch.Tensor, int8: torch.Tensor | None, bits: int) -> None:
    """Inverse of pack: load (G, ...) storage rows into a batched INR of the right shape."""
    half_at = code_at = 0
    with torch.no_grad():
        for weight, bias in zip(net.weights, net.biases, strict=False):
            count, fan_in, fan_out = weight.shape
            if bits == 16:
                weight.copy_(fp16[:, half_at : half_at + fan_in * fan_out].float().reshape(weight.shape))
                half_at += fan_in * fan_out
            else:
                q = int8[:, code_at : code_at + fan_in * fan_out].reshape(weight.shape)
                scale = fp16[:, half_at : half_at + fan_out].reshape(count, 1, fan_out)
                weight.copy_(dequantize_int8(q, scale))
                code_at, half_at = code_at + fan_in * fan_out, half_at + fan_out
            bias.copy_(fp16[:, half_at : half_at + fan_out].float().reshape(bias.shape))
            half_at += fan_out
    if half_at != fp16.shape[1] or (int8 is not None and code_at != int8.shape[1]):
        raise ValueError("stored INR parameters do not match the INR's shape")
