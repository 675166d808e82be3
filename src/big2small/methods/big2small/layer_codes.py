"""Layers stored as their weights' own b-bit codes instead of an INR (b = 2..8, or TERNARY).

Codes are symmetric integers q in [-(2^(b-1) - 1), 2^(b-1) - 1], one scale per output channel (dim 0), in fp16 or on
a logarithmic grid (scale_grid.py); the weight is q * scale. b = TERNARY (1) holds the three codes {-1, 0, 1} of
b = 2 in 1.6 bits: five codes per byte, as base-3 digits (3^5 = 243 values); b = 2 stays readable but is never
chosen, being the same codes in more bytes. Each channel's scale is the one of least squared error among clipping
points from MIN_CLIP_FRACTION to all of its max |w| (weights beyond the clipping point take the outermost code), since at
2-4 bits clipping the tails costs far less than spreading few levels over the whole range. They are bit-packed
per layer at b bits (TERNARY: in base 3), or, with entropy coding, as an rANS stream of the codes
(encodings/entropy_codes.py) wherever that is smaller, or with context coding too as a stream whose model adapts
to each kernel's earlier codes (encodings/context_codes.py) wherever that is smaller still.
At rate levels >= 1 codes of up to DEAD_ZONE_MAX_BITS may round with a dead zone (`dead_zone_round`, chosen per
channel with its scale): the decoder is the same, q * scale. Refinement may move each code by at most one level from
its stored code (rounding_offsets.py), chosen for the network's output instead of for the weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from big2small.encodings.bitpack import pack_uint, packed_size, unpack_uint
from big2small.encodings.context_codes import CONTEXT, context_decode, offered_context_stream
from big2small.encodings.entropy_codes import PACKED, RANS, rans_decode, rans_encode
from big2small.methods.big2small import scale_grid
from big2small.methods.big2small.storage import levels

TERNARY = 1  # the code_bits value of ternary codes packed five per byte
MIN_CODE_BITS, MAX_CODE_BITS = TERNARY, 8
CODE_CHOICES = (TERNARY, *range(3, MAX_CODE_BITS + 1))  # the code widths a layer may be given
TERNARY_PER_BYTE = 5
# The clipping points searched per channel: fractions of its max |w|, evenly spaced from this one up to 1.
MIN_CLIP_FRACTION, CLIP_POINTS = 0.1, 46
FP16_TINY = 6e-8  # scales never round to zero in fp16
# The price of a bit at each rate level, in units of the layer's mean squared weight: near the slope of a Gaussian
# layer's rate-distortion curve (2 ln 2 D per bit) at about 2.4, 1.6, 0.8 and 0.2 bits per weight.
RATE_PRICES = (0.05, 0.15, 0.5, 1.0)
RATE_LEVELS = len(RATE_PRICES)
# Dead-zone roundings (`dead_zone_round`) searched per channel at rate levels >= 1 for codes of at most
# DEAD_ZONE_MAX_BITS (where most codes are 0 and +-1 and the zero bin's width sets the rate); NEAREST is plain rounding.
NEAREST = 0.5
DEAD_ZONES = (NEAREST, 0.65, 0.8, 1.0)
DEAD_ZONE_MAX_BITS = 4


@dataclass
class WeightCodes:
    codes: torch.Tensor  # int8 (|code| <= 127 at every width), shaped like the weight
    scale: torch.Tensor  # one per output channel: fp16, or float32 points of scale_grid
    bits: int

    def __post_init__(self) -> None:
        # One byte per code: a ResNet-50's codes take 24 MB instead of int64's 188 MB while the refinement runs.
        self.codes = self.codes.to(torch.int8)

    def symbols(self) -> torch.Tensor:
        """The codes as the coders' symbols 0..2 x code_limit (int64)."""
        return self.codes.long() + code_limit(self.bits)

    def values(self) -> torch.Tensor:
        return self.codes.float() * self.scale.float().reshape(-1, *[1] * (self.codes.dim() - 1))

    def packed(self) -> torch.Tensor:
        return pack_ternary(self.symbols()) if self.bits == TERNARY else pack_uint(self.symbols(), self.bits)

    def stored(self, entropy_coding: bool, context_coding: bool = False) -> tuple[str, torch.Tensor]:
        """(coding, bytes) of the codes as the artifact holds them: fixed-width packed, or with entropy_coding
        the smallest entropy-coded stream (`_stream`) where it is smaller."""
        if not entropy_coding or self.codes.numel() == 0:
            return PACKED, self.packed()
        coding, stream = self._stream(context_coding)
        return (coding, stream) if stream.numel() < self.packed_size() else (PACKED, self.packed())

    def packed_size(self) -> int:
        """Bytes of the codes packed at their fixed width (scales not included)."""
        return packed_codes_size(self.codes.numel(), self.bits)

    def stored_size(self, entropy_coding: bool, context_coding: bool = False) -> tuple[str, int]:
        """(coding, byte count) of `stored(entropy_coding, context_coding)`, without packing the codes to count
        them."""
        if not entropy_coding or self.codes.numel() == 0:
            return PACKED, self.packed_size()
        coding, stream = self._stream(context_coding)
        return (coding, stream.numel()) if stream.numel() < self.packed_size() else (PACKED, self.packed_size())

    def _stream(self, context_coding: bool) -> tuple[str, torch.Tensor]:
        """(coding, bytes) of the smaller of the codes' rANS stream and, with context_coding for codes of up to
        context_codes.MAX_ALPHABET symbols, their context-coded stream."""
        coding, stream = RANS, rans_encode(self.symbols(), self.alphabet())
        context = offered_context_stream(self.symbols(), self.alphabet(), self._context() if context_coding else None)
        if context is not None and context.numel() < stream.numel():
            coding, stream = CONTEXT, context
        return coding, stream

    def stream_sizes(self) -> tuple[int, int]:
        """Bytes of the codes as entropy coding stores them (`stored_size(True, ...)`): under one static model, and
        also offered the context-coded stream."""
        static = self.stored_size(True)[1]
        context = offered_context_stream(self.symbols(), self.alphabet(), self._context())
        return static, static if context is None else min(static, context.numel())

    def _context(self) -> tuple[int, int]:
        """The context coder's zero symbol and codes per kernel."""
        return code_limit(self.bits), self.kernel()

    def alphabet(self) -> int:
        """How many symbols the codes may take: 2 x code_limit + 1."""
        return 2 * code_limit(self.bits) + 1

    def kernel(self) -> int:
        """Codes per kernel, the context coder's unit: a conv's kh x kw (1 for a linear layer)."""
        return math.prod(self.codes.shape[2:])


def context_share(coded: Iterable[WeightCodes]) -> float:
    """How many times more bytes the `coded` layers' codes take under static models than as stored with context
    coding (1.0: the context saves nothing)."""
    sizes = [codes.stream_sizes() for codes in coded]
    stored = sum(size for _, size in sizes)
    return sum(size for size, _ in sizes) / stored if stored else 1.0


RATE_OPTION_STEP = 100  # a code option is bits + RATE_OPTION_STEP x rate level (codec_choice's option keys)


def code_option(bits: int, rate_level: int = 0) -> int:
    return bits + RATE_OPTION_STEP * rate_level


def option_bits(option: int) -> int:
    return option % RATE_OPTION_STEP


def option_rate_level(option: int) -> int:
    return option // RATE_OPTION_STEP


def code_limit(bits: int) -> int:
    """The largest |code| at `bits` (TERNARY: 1)."""
    return 1 if bits == TERNARY else levels(bits)


def pack_ternary(digits: torch.Tensor) -> torch.Tensor:
    """Values 0..2 -> uint8, five base-3 digits per byte, the first the least significant."""
    flat = digits.reshape(-1).long()
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % TERNARY_PER_BYTE)])
    powers = 3 ** torch.arange(TERNARY_PER_BYTE, dtype=torch.long)
    return (flat.reshape(-1, TERNARY_PER_BYTE) * powers).sum(dim=1).to(torch.uint8)


def unpack_ternary(packed: torch.Tensor, count: int) -> torch.Tensor:
    """Inverse of pack_ternary: the first `count` digits as int64; a byte above 242 holds no five digits."""
    if packed.numel() != math.ceil(count / TERNARY_PER_BYTE):
        raise ValueError(f"expected {math.ceil(count / TERNARY_PER_BYTE)} ternary bytes for {count} codes, "
                         f"got {packed.numel()}")
    if packed.numel() and int(packed.max()) >= 3 ** TERNARY_PER_BYTE:
        raise ValueError("ternary codes: a byte above 242")
    powers = 3 ** torch.arange(TERNARY_PER_BYTE, dtype=torch.long)
    return ((packed.long()[:, None] // powers) % 3).reshape(-1)[:count]


def weight_codes(weight: torch.Tensor, bits: int, rate_level: int = 0,
                 dead_zones: tuple[float, ...] = (NEAREST,), log_scales: bool = False) -> WeightCodes:
    """The nearest b-bit codes of a weight tensor (output channels first), at each channel's least-error scale; at
    `rate_level` k >= 1, the scale of least error + RATE_PRICES[k - 1] x mean squared weight x the channel's bits
    (its codes' empirical entropy), which for entropy-coded codes trades error for fewer bytes."""
    return weight_codes_at_levels(weight, bits, [rate_level], dead_zones, log_scales)[rate_level]


def weight_codes_at_levels(weight: torch.Tensor, bits: int, rate_levels: list[int],
                           dead_zones: tuple[float, ...] = (NEAREST,), log_scales: bool = False) -> dict[int, WeightCodes]:
    """weight_codes at each of `rate_levels`, searching the clipping points once for all of them; at rate levels
    >= 1 and bits <= DEAD_ZONE_MAX_BITS, each channel also takes the rounding of `dead_zones` (`dead_zone_round`)
    that, with its scale, has the least priced error. `log_scales`: the scales are points of scale_grid (below the
    layer's largest |w| / limit), else fp16."""
    rows = weight.detach().float().reshape(weight.shape[0], -1)
    limit = code_limit(bits)
    largest = rows.abs().amax(dim=1, keepdim=True)
    mean_square = float((rows ** 2).mean())
    prices = {level: RATE_PRICES[level - 1] * mean_square if level else 0.0 for level in rate_levels}
    zones = dead_zones if any(prices.values()) and bits <= DEAD_ZONE_MAX_BITS else (NEAREST,)
    best_error = {level: torch.full_like(largest, math.inf) for level in rate_levels}
    best_scale = {level: torch.ones_like(largest) for level in rate_levels}
    best_zone = {level: torch.full_like(largest, NEAREST) for level in rate_levels}
    fractions = torch.linspace(MIN_CLIP_FRACTION, 1.0, CLIP_POINTS).tolist()
    if log_scales:  # the grid points nearest each clipping point, and the lowest that clips nothing
        top = scale_grid.layer_top(float(largest.max()) / limit)
        candidates = [scale_grid.snapped(largest * fraction / limit, top) for fraction in fractions]
        candidates.append(scale_grid.snapped(largest / limit, top, up=True))
    else:
        candidates = [(largest * fraction / limit).half().float().clamp_min(FP16_TINY) for fraction in fractions]
    for scale in candidates:
        for zone in zones:
            codes = dead_zone_round(rows / scale, zone).clamp(-limit, limit)
            squared = ((codes * scale - rows) ** 2).sum(dim=1, keepdim=True)
            entropy = channel_bits(codes.long() + limit, 2 * limit + 1) if any(prices.values()) else None
            for level, price in prices.items():
                if zone != NEAREST and not price:
                    continue  # at any scale the nearest codes have the least error
                error = squared + price * entropy if price else squared
                better = error < best_error[level]
                best_error[level] = torch.where(better, error, best_error[level])
                best_scale[level] = torch.where(better, scale, best_scale[level])
                best_zone[level] = torch.where(better, zone, best_zone[level])
    stored_dtype = torch.float32 if log_scales else torch.float16
    return {level: WeightCodes(dead_zone_round(rows / scale, best_zone[level]).clamp(-limit, limit)
                               .reshape(weight.shape), scale.reshape(-1).to(stored_dtype), bits)
            for level, scale in best_scale.items()}


def dead_zone_round(ratios: torch.Tensor, zone: float | torch.Tensor) -> torch.Tensor:
    """sign(x) floor(|x| + 1 - zone): a value rounds up in magnitude only past `zone` of a step, so zone 0.5 is the
    nearest code and a larger zone widens the zero bin and pulls every code towards zero (fewer bits once entropy
    coded). `zone` is a number or one per row."""
    if isinstance(zone, float) and zone == NEAREST:
        return torch.round(ratios)
    zoned = torch.sign(ratios) * torch.floor(ratios.abs() + 1 - zone)
    return zoned if isinstance(zone, float) else torch.where(zone == NEAREST, torch.round(ratios), zoned)


def channel_bits(symbols: torch.Tensor, alphabet: int) -> torch.Tensor:
    """(channels, 1): each row's empirical entropy in bits, times its length."""
    counts = torch.zeros(symbols.shape[0], alphabet).scatter_add_(1, symbols, torch.ones_like(symbols, dtype=torch.float))
    shares = counts / symbols.shape[1]
    return -(counts * torch.log2(shares.clamp_min(1e-30))).sum(dim=1, keepdim=True)


def unpack_weight_codes(packed: torch.Tensor, scale: torch.Tensor, shape: tuple[int, ...], bits: int,
                        coding: str = PACKED) -> WeightCodes:
    if coding == RANS:
        limit = code_limit(bits)
        codes = rans_decode(packed, 2 * limit + 1, math.prod(shape)) - limit
    elif coding == CONTEXT:
        limit = code_limit(bits)
        codes = context_decode(packed, 2 * limit + 1, math.prod(shape), limit, math.prod(shape[2:])) - limit
    elif bits == TERNARY:
        codes = unpack_ternary(packed, math.prod(shape)) - 1
    else:
        codes = unpack_uint(packed, bits, math.prod(shape)) - levels(bits)
    return WeightCodes(codes.reshape(shape), scale.reshape(-1), bits)


def code_bytes(shape: tuple[int, ...] | torch.Size, bits: int) -> int:
    """Bytes of one layer's codes, packed at a fixed width, and fp16 scales."""
    return packed_codes_size(math.prod(shape), bits) + scale_grid.scale_bytes(shape[0], log_scales=False)


def packed_codes_size(count: int, bits: int) -> int:
    """Bytes of `count` codes packed at `bits` (TERNARY: five per byte)."""
    return math.ceil(count / TERNARY_PER_BYTE) if bits == TERNARY else packed_size(count, bits)
