"""What a compressor's artifact header may hold, declared per compressor and checked before anything is decoded.

A compressor that declares its header (`Compressor.META_FIELDS` not None) lists every header key beyond
`replaced` and `layers`, and every per-layer key beyond `name` and `shape`, each with its type and range; and it
states each tensor's element count as a function of the checked header (`Compressor.payload_sizes`). A header
with a missing, unknown or out-of-range field, or a tensor of another size, is refused naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BASE_META_KEYS = ("replaced", "layers")
BASE_LAYER_KEYS = ("name", "shape")


@dataclass(frozen=True)
class Field:
    """One header value: an integer in low..high, or one of `choices`; None only when `nullable`. `provenance`
    marks a value the rebuild never reads (kept for the record), which may be anything JSON holds."""

    low: int | None = None
    high: int | None = None
    choices: tuple = ()
    nullable: bool = False
    provenance: bool = False
    optional: bool = False  # the key may be absent (a field that newer writers add only where it applies)

    def check(self, value: Any, where: str) -> None:
        if self.provenance or (value is None and self.nullable):
            return
        if self.choices:
            if isinstance(value, bool) or value not in self.choices:
                raise ValueError(f"{where} is {value!r}, not one of {list(self.choices)}")
            return
        if isinstance(value, bool) or not isinstance(value, int) or \
                (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(f"{where} is {value!r}, not an integer in {self.low}..{self.high}")


def check_keys(entry: dict, allowed: tuple[str, ...] | list[str], where: str,
               optional: tuple[str, ...] | list[str] = ()) -> None:
    """`entry` has exactly the keys `allowed`, and any of `optional`."""
    missing = [key for key in allowed if key not in entry]
    unknown = sorted(set(entry) - set(allowed) - set(optional))
    if missing or unknown:
        raise ValueError(f"{where} " + "; ".join(
            part for part in (f"lacks {missing}" if missing else "", f"has unknown {unknown}" if unknown else "")
            if part))


def check_declared_header(meta: dict, meta_fields: dict[str, Field], layer_fields: dict[str, Field]) -> None:
    """The header holds exactly the declared fields, each of its type and in its range."""
    check_keys(meta, [*BASE_META_KEYS, *meta_fields], "the header")
    for key, field in meta_fields.items():
        field.check(meta[key], key)
    required = [key for key, field in layer_fields.items() if not field.optional]
    optional = [key for key, field in layer_fields.items() if field.optional]
    for index, layer in enumerate(meta["layers"]):
        where = f"layers[{index}]"
        check_keys(layer, [*BASE_LAYER_KEYS, *required], where, optional)
        for key, field in layer_fields.items():
            if key in layer:
                field.check(layer[key], f"{where}.{key}")


def check_payload_sizes(tensors: dict, sizes: dict[str, int | range]) -> None:
    """Every declared tensor is present with the element count the header implies (one count, or a range where
    the count depends on decoded content), and no other tensor is."""
    check_keys(tensors, list(sizes), "the tensors")
    for name, size in sizes.items():
        count = tensors[name].numel()
        if count not in (size if isinstance(size, range) else (size,)):
            implied = f"{size.start}..{size.stop - 1}" if isinstance(size, range) else size
            raise ValueError(f"tensor {name!r} holds {count} values, its header implies {implied}")
