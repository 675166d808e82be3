"""How the bit-width compressors store one layer's integer codes: packed at a fixed width or, with entropy coding,
as an rANS stream of the codes (encodings/entropy_codes.py) or, with context coding as well, a stream coded under the
context of each kernel's earlier codes (encodings/context_codes.py), whichever is smallest.

The layer's header entry says which: `coding: rans` or `coding: context` with the stream's `code_bytes`, or neither
key for packed codes (so every artifact written before entropy coding reads as it did). A stream is only ever stored
where it is smaller than the packed codes, so a header that claims a larger one is refused before anything is
decoded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from big2small.encodings.context_codes import (
    CONTEXT,
    MAX_ALPHABET,
    STREAMS,
    context_decode,
    offered_context_stream,
)
from big2small.encodings.entropy_codes import RANS, rans_decode, smaller_coding
from big2small.methods.header import Field

# The per-layer header fields of a coded layer, for a compressor's LAYER_FIELDS.
CODING_FIELDS = {"coding": Field(choices=STREAMS, optional=True), "code_bytes": Field(1, None, optional=True)}


def store(symbols: torch.Tensor, alphabet: int, packed: torch.Tensor, entropy_coding: bool,
          context: tuple[int, int] | None = None) -> tuple[dict, torch.Tensor]:
    """(header fields, payload bytes) of a layer whose codes are `symbols` in 0..alphabet-1, `packed` at their width;
    `context`: (the symbol of the code nearest zero, codes per kernel) to offer the context-coded stream too, or
    None."""
    if not entropy_coding:
        return {}, packed
    coding, data = smaller_coding(symbols, alphabet, packed)
    stream = offered_context_stream(symbols, alphabet, context)
    if stream is not None and stream.numel() < data.numel():
        coding, data = CONTEXT, stream
    return ({"coding": coding, "code_bytes": int(data.numel())} if coding in STREAMS else {}), data


def sizing_fields(packed_bytes: int, entropy_coding: bool) -> dict:
    """Header fields at least as long as the ones `store` can write for a layer of `packed_bytes` packed bytes, for
    sizing passes that do not encode."""
    return {"coding": CONTEXT, "code_bytes": packed_bytes} if entropy_coding else {}


def stored_bytes(layer: dict, packed_bytes: int) -> int:
    """Bytes of the layer's codes in the payload, from its (checked) header entry."""
    if ("coding" in layer) != ("code_bytes" in layer):
        raise ValueError(f"layer {layer.get('name')}: coding and code_bytes come together")
    if layer.get("coding") not in STREAMS:
        return packed_bytes
    if layer["code_bytes"] >= packed_bytes:
        raise ValueError(f"layer {layer.get('name')}: a {layer['coding']} stream of {layer['code_bytes']} bytes is "
                         f"not smaller than its {packed_bytes} packed bytes")
    return layer["code_bytes"]


def load(layer: dict, data: torch.Tensor, alphabet: int, count: int,
         unpack: Callable[[torch.Tensor], torch.Tensor], context: tuple[int, int] | None = None) -> torch.Tensor:
    """The layer's `count` symbols from its payload bytes `data`; `unpack` reads packed codes; `context` as `store`
    was given it."""
    coding = layer.get("coding")
    if coding == CONTEXT:
        if context is None or alphabet > MAX_ALPHABET:
            raise ValueError(f"layer {layer.get('name')}: codes of {alphabet} symbols are never context-coded")
        return context_decode(data, alphabet, count, *context)
    return rans_decode(data, alphabet, count) if coding == RANS else unpack(data)
