"""Big2Small's artifact layout: packing a fitted plan into tensors + header, and rebuilding weights from them.

Tensors: `inr_fp16` (every INR's fp16 parameters, or its scales and biases with coded storage), `inr_int8` (8-bit
weight codes) and `inr_packed` (6- and 4-bit codes, bit-packed per INR), each INR at the header's `bits` unless
its target is listed in `inr_bits`, `raw` (targets stored in fp16),
`layer_codes` and `layer_scales` (targets stored as their weights' own b-bit codes, bit-packed per layer or, where a
layer's entry in the header's layer list says `code_coding: rans` or `context`, its stream of `code_bytes` bytes
(encodings/entropy_codes.py, encodings/context_codes.py), and an
fp16 scale per output channel; present only when some are, with each target's b in the header's `code_bits`, 1 for
ternary codes five to a byte: layer_codes.py; where the header says `log_scales`, the scales are SCALE_STEPS, a
uint8 per output channel, and SCALE_TOPS, an int16 per coded layer, of scale_grid.py's grid instead),
`stats` (per layer mean and std of the standardised inliers), `outlier_values` (fp16) and `outlier_index` (their positions, see encodings/index_codes.py), `permutation` (the
channel orders, bit-packed), `tuned_levels` and `tuned_scales` (the model's 1-D parameters that are not replaced,
in the model's parameter order: tuned_names, as the refinement changed them from the model's own values, at the
header's `tuned_bits`: tuned_values.py) or, in artifacts written without `tuned_bits`, `tuned` (those values in
fp16); present only when they were tuned, with their count in the header's `tuned`. The header lists layers, INR
widths and settings. Rebuild reads the artifact alone;
the channel orders are stored so rebuilt weights go back into the original order and the model's uncompressed
parameters (BN, biases) stay valid as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from big2small.codec import Compressed
from big2small.encodings import index_codes
from big2small.encodings.bitpack import pack_uint, unpack_uint
from big2small.encodings.context_codes import STREAMS
from big2small.encodings.entropy_codes import PACKED
from big2small.graph.weights import set_parameter
from big2small.methods.base import require_at_least
from big2small.methods.big2small import scale_grid, tuned_values
from big2small.methods.big2small.allocation import CODES
from big2small.methods.big2small.coords import build_targets
from big2small.methods.big2small.fitting import INRGroup
from big2small.methods.big2small.layer_codes import (
    MAX_CODE_BITS,
    MIN_CODE_BITS,
    packed_codes_size,
    unpack_weight_codes,
)
from big2small.methods.big2small.networks import build_network, layer_sizes
from big2small.methods.big2small.plan import Big2SmallPlan, stacks_of
from big2small.methods.big2small.reconstruct import LayerCode, reconstruct
from big2small.methods.big2small.settings import STORAGE_BITS, INRSettings
from big2small.methods.big2small.storage import (
    CODE_TENSORS,
    code_dtype,
    levels,
    stored_counts,
)
from big2small.methods.big2small.storage import pack as pack_inr
from big2small.methods.big2small.storage import unpack as unpack_inr

NAME = "big2small"
MAX_STORED_WIDTH = 1 << 16  # far above any inr.max_width a budget picks
MAX_STORED_DEPTH = 64       # far above any inr.depth fitted, as the frequencies below: a forged header's size
MAX_STORED_FREQUENCIES = 64  # is bounded before anything is built from it
MAX_ORDER_BITS = 32         # bits per stored channel index
# The coded layers' scales on scale_grid's grid (header `log_scales`): a step per output channel, a top per layer.
SCALE_STEPS, SCALE_TOPS = "layer_scale_steps", "layer_scale_tops"


def tuned_names(model: nn.Module, replaced) -> list[str]:
    """The model's 1-D parameters that are not in `replaced` (BatchNorm scales and shifts, biases), in its
    parameter order: what an artifact's `tuned` tensor holds, one after the other."""
    skipped = set(replaced)
    return [name for name, p in model.named_parameters() if p.dim() == 1 and name not in skipped]


def pack(plan: Big2SmallPlan, inr: INRSettings, bits: int, groups: list[INRGroup], settings: dict,
         sizing_only: bool = False, tuned_bits: int | None = None) -> Compressed:
    """The artifact of a fitted plan whose INRs are stored at `bits` unless `plan.inr_bits` says otherwise; `groups`
    hold exactly the plan's INRs; the tuned 1-D parameters as changes at `tuned_bits` (None: fp16 values). With
    sizing_only, INR parameters are zeros of the final sizes (budgeting)."""
    weights, prepared, widths = plan.weights, plan.prepared, plan.widths
    fitted = {}
    for group in [] if sizing_only else groups:
        stored = pack_inr(group.net, group.bits)
        for g, target in enumerate(group.targets):
            if target.key in fitted or plan.inr_bits.get(target.key) != group.bits:
                raise ValueError(f"big2small: the INRs packed do not match the plan at {target.key}")
            fitted[target.key] = {kind: rows[g] for kind, rows in stored.items()}
    halves, raw, stats, outlier_values, outlier_bytes = [], [], [], [], []
    codes: dict[str, list[torch.Tensor]] = {}  # code tensor name -> the INRs' code rows, in target order
    layer_codes, layer_scales, scale_tops = [], [], []
    layer_meta: dict[str, dict] = {}
    for target in plan.targets:
        width = widths[target.key]
        if width is None:
            raw += [weights[s.name].reshape(-1).half() for s in target.segments]
            continue
        if width == CODES:
            for segment in target.segments:
                if sizing_only:
                    coding, size = plan.stored_codes_size(segment.name, plan.code_option(target.key))
                    layer_codes.append(torch.zeros(size, dtype=torch.uint8))
                    scale = torch.ones(segment.shape[0])
                else:
                    coded = plan.coded[segment.name]
                    coding, data = coded.stored(plan.entropy_coding, plan.context_coding)
                    size = data.numel()
                    layer_codes.append(data)
                    scale = coded.scale
                if plan.log_scales:
                    top, steps = scale_grid.encode(scale)
                    layer_scales.append(steps)
                    scale_tops.append(top)
                else:
                    layer_scales.append(scale.half())
                if coding != PACKED:  # absent: packed at its code bits, as every artifact before entropy coding
                    layer_meta[segment.name] = {"code_coding": coding, "code_bytes": size}
            continue
        target_bits = plan.inr_bits[target.key]
        count16, count_codes = stored_counts(layer_sizes(inr, target.dims, target.outputs, width), target_bits)
        if sizing_only:
            rows = {"fp16": torch.zeros(count16, dtype=torch.float16),
                    "codes": torch.zeros(count_codes, dtype=code_dtype(target_bits))}
        elif target.key in fitted:
            rows = fitted[target.key]
        else:
            raise ValueError(f"big2small: no fitted INR for {target.key}")
        halves.append(rows["fp16"])
        if target_bits < 16:
            codes.setdefault(CODE_TENSORS[target_bits], []).append(rows["codes"])
        for segment in target.segments:
            p = prepared[segment.name]
            coding, index_bytes = index_codes.encode_indices(p.outlier_index, weights[segment.name].numel())
            stats.append(torch.tensor([p.mean, p.std]))
            outlier_values.append(p.outlier_value)
            outlier_bytes.append(index_bytes)
            layer_meta[segment.name] = {"outliers": int(p.outlier_index.numel()), "coding": coding,
                                        "index_bytes": int(index_bytes.numel())}
    tensors = {
        "inr_fp16": _cat(halves, torch.float16), "raw": _cat(raw, torch.float16),
        "stats": torch.stack(stats).float() if stats else torch.zeros(0, 2),
        "outlier_values": _cat(outlier_values, torch.float16), "outlier_index": _cat(outlier_bytes, torch.uint8),
    }
    if bits < 16:  # the header's bits always have their code tensor, empty or not
        codes.setdefault(CODE_TENSORS[bits], [])
    for name, parts in codes.items():
        tensors[name] = _cat(parts, parts[0].dtype) if parts else torch.zeros(0, dtype=code_dtype(bits))
    if layer_codes:
        tensors["layer_codes"] = _cat(layer_codes, torch.uint8)
        if plan.log_scales:
            tensors[SCALE_STEPS], tensors[SCALE_TOPS] = _cat(layer_scales, torch.uint8), torch.tensor(scale_tops,
                                                                                                     dtype=torch.int16)
        else:
            tensors["layer_scales"] = _cat(layer_scales, torch.float16)
    if plan.tuned and tuned_bits is None:
        tensors["tuned"] = _cat(list(plan.tuned.values()), torch.float16)
    elif plan.tuned:
        tensors.update(tuned_values.encode([plan.tuned[n] - plan.tuned_from[n] for n in plan.tuned], tuned_bits))
    permutation_meta = _pack_orders(plan.orders, tensors)
    other_bits = {key: b for key, b in plan.inr_bits.items() if b != bits}
    meta = {
        "replaced": list(weights),
        "inr": {"kind": inr.kind, "unit": inr.unit, "scope": inr.scope, "depth": inr.depth,
                "frequencies": inr.frequencies, "activation": inr.activation, "omega0": inr.omega0},
        "bits": bits,
        **({"inr_bits": other_bits} if other_bits else {}),  # absent when every INR is at `bits`
        "widths": {t.key: widths[t.key] for t in plan.targets},
        "code_bits": dict(plan.code_bits),
        "layers": [{"name": n, "shape": list(w.shape), **layer_meta.get(n, {})} for n, w in weights.items()],
        "permutation": permutation_meta,
        **({"tuned": sum(int(value.numel()) for value in plan.tuned.values())} if plan.tuned else {}),
        **({"tuned_bits": tuned_bits} if plan.tuned and tuned_bits is not None else {}),
        **({"log_scales": True} if plan.log_scales and layer_codes else {}),
    }
    return Compressed(NAME, settings, tensors, meta)


def _pack_orders(orders, tensors) -> dict:
    spaces, layers, packed = [], {}, []
    for index, (space, order) in enumerate(orders):
        bits = max(1, math.ceil(math.log2(space.size)))
        packed.append(pack_uint(order, bits))
        spaces.append({"size": space.size, "bits": bits})
        for module in space.producers:
            layers.setdefault(f"{module}.weight", [None, None])[0] = index
        for module in space.consumers:
            layers.setdefault(f"{module}.weight", [None, None])[1] = index
    if packed:
        tensors["permutation"] = torch.cat(packed)
    return {"spaces": spaces, "layers": layers}


def check_meta(meta: dict, model: nn.Module) -> None:
    """The header fields a rebuild reads have the types, ranges and sizes a packed plan gives them (ValueError
    naming the field otherwise); the layer list itself is checked against the model by the base class."""
    inr = INRSettings(**{**_dict(meta, "inr"), "width": None})
    if inr.depth > MAX_STORED_DEPTH or inr.frequencies > MAX_STORED_FREQUENCIES:  # the rebuild lists every layer
        raise ValueError(f"inr.depth {inr.depth} or inr.frequencies {inr.frequencies} is beyond the "
                         f"{MAX_STORED_DEPTH} or {MAX_STORED_FREQUENCIES} an artifact may hold")
    if meta.get("bits") not in STORAGE_BITS:
        raise ValueError(f"bits is {meta.get('bits')!r}, not one of {list(STORAGE_BITS)}")
    for key, width in _dict(meta, "widths").items():
        if width is not None and (not _is_int(width) or not 0 <= width <= MAX_STORED_WIDTH):  # 0: CODES
            raise ValueError(f"widths[{key!r}] is {width!r}")
    inr_targets = [key for key, width in meta["widths"].items() if width not in (None, CODES)]
    other_bits = _dict(meta, "inr_bits") if "inr_bits" in meta else {}
    if not set(other_bits) <= set(inr_targets) or not all(b in STORAGE_BITS and _is_int(b) for b in other_bits.values()):
        raise ValueError(f"inr_bits is {other_bits!r}: not {list(STORAGE_BITS)} bits for targets stored as INRs")
    code_bits = _code_bits(meta)
    if sorted(code_bits) != sorted(key for key, width in meta["widths"].items() if width == CODES) or not all(
            _is_int(b) and MIN_CODE_BITS <= b <= MAX_CODE_BITS for b in code_bits.values()):
        raise ValueError(f"code_bits is {code_bits!r}: not {MIN_CODE_BITS}..{MAX_CODE_BITS} bits (1: ternary) for exactly the "
                         "targets stored as codes (width 0)")
    for layer in meta["layers"]:
        numel = model.get_parameter(layer["name"]).numel()
        if not (_is_int(layer.get("outliers", 0)) and 0 <= layer.get("outliers", 0) <= numel
                and _is_int(layer.get("index_bytes", 0)) and layer.get("index_bytes", 0) >= 0
                and layer.get("coding", "varint") in ("varint", "bitmap")):
            raise ValueError(f"layer {layer['name']} has invalid outlier fields")
        if "code_coding" in layer and not (layer["code_coding"] in STREAMS and _is_int(layer.get("code_bytes"))
                                           and 0 < layer["code_bytes"] < numel * MAX_CODE_BITS // 8 + 1):
            raise ValueError(f"layer {layer['name']} has invalid code_coding / code_bytes fields")
        if "code_bytes" in layer and "code_coding" not in layer:
            raise ValueError(f"layer {layer['name']} has code_bytes without code_coding")
    if "log_scales" in meta and meta["log_scales"] is not True:
        raise ValueError(f"log_scales is {meta['log_scales']!r}: present only as true")
    if "tuned" in meta:
        count = sum(model.get_parameter(name).numel() for name in tuned_names(model, meta["replaced"]))
        if meta["tuned"] != count or not _is_int(meta["tuned"]):
            raise ValueError(f"tuned is {meta['tuned']!r}, not the {count} values of this model's 1-D parameters "
                             "that are not replaced")
    if "tuned_bits" in meta and not (_is_int(meta["tuned_bits"]) and "tuned" in meta
                                     and tuned_values.MIN_BITS <= meta["tuned_bits"] <= tuned_values.MAX_BITS):
        raise ValueError(f"tuned_bits is {meta['tuned_bits']!r}: not {tuned_values.MIN_BITS}..{tuned_values.MAX_BITS} "
                         "bits beside a tuned count")
    permutation = _dict(meta, "permutation")
    spaces = permutation.get("spaces")
    if not isinstance(spaces, list) or not all(
            isinstance(space, dict) and _is_int(space.get("size")) and _is_int(space.get("bits"))
            and space["size"] >= 1 and 1 <= space["bits"] <= MAX_ORDER_BITS and 2 ** space["bits"] >= space["size"]
            for space in spaces):
        raise ValueError("permutation.spaces is not a list of {size, bits}")
    for name, pair in _dict(permutation, "layers").items():
        if name not in meta["replaced"] or not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"permutation.layers[{name!r}] is {pair!r}")
        shape = model.get_parameter(name).shape
        for dim, index in enumerate(pair):
            if index is None:
                continue
            if not _is_int(index) or not 0 <= index < len(spaces) or dim >= len(shape) or \
                    spaces[index]["size"] != shape[dim]:
                raise ValueError(f"permutation.layers[{name!r}] names a channel space that does not fit the layer")
    roles = [(index, dim) for pair in permutation["layers"].values() for dim, index in enumerate(pair)
             if index is not None]
    for index in range(len(spaces)):  # a permuted space is written by some layer and read by another
        if (index, 0) not in roles or (index, 1) not in roles:
            raise ValueError(f"permutation space {index} lacks the layer that writes or the layer that reads it")


def check_values(tensors: dict[str, torch.Tensor]) -> None:
    """Each layer's std and each coded channel's scale are positive, as pack writes them (outliers.py floors the std,
    layer_codes.py the scales)."""
    require_at_least(tensors["stats"].reshape(-1, 2)[:, 1], "stats (std)", 0.0, strict=True)
    require_at_least(tensors.get("layer_scales"), "layer_scales", 0.0, strict=True)
    require_at_least(tensors.get(tuned_values.SCALES_TENSOR), tuned_values.SCALES_TENSOR, 0.0)


def _inr_bits(meta: dict) -> dict[str, int]:
    """Storage bits of every target stored as an INR: the header's `bits` unless `inr_bits` names others."""
    other_bits = meta.get("inr_bits", {})
    return {key: int(other_bits.get(key, meta["bits"])) for key, width in meta["widths"].items()
            if width not in (None, CODES)}


def _code_bits(meta: dict) -> dict:
    """Bits of each target stored as codes; artifacts written before code_bits existed stored 8-bit codes."""
    if "code_bits" not in meta:
        return {key: 8 for key, width in meta["widths"].items() if width == CODES}
    return _dict(meta, "code_bits")


def _layer_codes(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The packed layer codes; those of artifacts written before they were packed (`layer_int8`, signed 8-bit
    codes) are the same bytes once offset by 127."""
    if "layer_int8" in tensors:
        if "layer_codes" in tensors:
            raise ValueError("big2small artifact: both layer_int8 and layer_codes")
        return (tensors["layer_int8"].to(torch.int16) + levels(8)).to(torch.uint8)
    return tensors.get("layer_codes", torch.zeros(0, dtype=torch.uint8))


def _layer_scales(meta: dict, tensors: dict[str, torch.Tensor]):
    """(every coded channel's stored scale entry, scale_of): scale_of(layer, at, channels) gives the scales of the
    coded layer `layer` (its index among the coded layers) whose channels start at entry `at`, fp16 or from
    scale_grid's grid as the header's `log_scales` says."""
    if not meta.get("log_scales"):
        if SCALE_STEPS in tensors or SCALE_TOPS in tensors:
            raise ValueError("big2small artifact: grid scales in an artifact whose header has no log_scales")
        scales = tensors.get("layer_scales", torch.zeros(0, dtype=torch.float16))
        return scales, lambda layer, at, channels: scales[at:at + channels]
    if "layer_scales" in tensors:
        raise ValueError("big2small artifact: fp16 scales in an artifact whose header says log_scales")
    steps = tensors.get(SCALE_STEPS, torch.zeros(0, dtype=torch.uint8))
    tops = tensors.get(SCALE_TOPS, torch.zeros(0, dtype=torch.int16))

    def scale_of(layer: int, at: int, channels: int) -> torch.Tensor:
        if layer >= tops.numel() or at + channels > steps.numel():
            raise ValueError("big2small artifact: payload size does not match its layer list")
        return scale_grid.decode(int(tops[layer]), steps[at:at + channels])
    return steps, scale_of


def _dict(meta: dict, key: str) -> dict:
    value = meta.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key} is {type(value).__name__}, not an object")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rebuild(compressed: Compressed, model: nn.Module) -> nn.Module:
    """Write the weights the artifact encodes into `model`, reading nothing but the artifact."""
    meta, tensors = compressed.meta, compressed.tensors
    inr = INRSettings(**{**meta["inr"], "width": None})
    inr_bits = _inr_bits(meta)
    layers = {layer["name"]: layer for layer in meta["layers"]}
    shapes = {name: torch.zeros(layer["shape"]) for name, layer in layers.items()}
    targets = build_targets(shapes, inr.unit, inr.scope, alone=set(shapes) & set(meta["widths"]))
    widths = {key: (None if w is None else int(w)) for key, w in meta["widths"].items()}
    if sorted(t.key for t in targets) != sorted(widths):
        raise ValueError("big2small artifact: its targets do not match its layer list")

    code_at = dict.fromkeys(CODE_TENSORS.values(), 0)  # per code tensor
    half_at = raw_at = stat_at = value_at = index_at = layer_code_at = scale_at = coded_at = 0
    layer_codes, code_bits = _layer_codes(tensors), _code_bits(meta)
    layer_scales, scale_of = _layer_scales(meta, tensors)
    rows: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    codes: dict[str, LayerCode] = {}
    decoded: dict[str, torch.Tensor] = {}
    for target in targets:
        width = widths[target.key]
        if width is None:
            for segment in target.segments:
                count = math.prod(segment.shape)
                decoded[segment.name] = tensors["raw"][raw_at : raw_at + count].float().reshape(segment.shape)
                raw_at += count
            continue
        if width == CODES:
            segment_bits = int(code_bits[target.key])
            for segment in target.segments:
                size, channels = packed_codes_size(math.prod(segment.shape), segment_bits), segment.shape[0]
                coding = layers[segment.name].get("code_coding", PACKED)
                if coding in STREAMS:  # a stream is stored only where it is smaller than the packed codes
                    if layers[segment.name]["code_bytes"] >= size:
                        raise ValueError(f"big2small artifact: {segment.name}'s {coding} stream is not smaller "
                                         "than its packed codes")
                    size = layers[segment.name]["code_bytes"]
                if layer_code_at + size > layer_codes.numel() or scale_at + channels > layer_scales.numel():
                    raise ValueError("big2small artifact: payload size does not match its layer list")
                decoded[segment.name] = unpack_weight_codes(layer_codes[layer_code_at:layer_code_at + size],
                                                            scale_of(coded_at, scale_at, channels),
                                                            segment.shape, segment_bits, coding).values()
                layer_code_at, scale_at, coded_at = layer_code_at + size, scale_at + channels, coded_at + 1
            continue
        target_bits = inr_bits[target.key]
        count16, count_codes = stored_counts(layer_sizes(inr, target.dims, target.outputs, width), target_bits)
        code_rows = None
        if target_bits < 16:
            name = CODE_TENSORS[target_bits]
            code_rows = tensors.get(name, torch.zeros(0))[code_at[name] : code_at[name] + count_codes]
            code_at[name] += count_codes
        rows[target.key] = (tensors["inr_fp16"][half_at : half_at + count16], code_rows)
        half_at += count16
        for segment in target.segments:
            layer = layers[segment.name]
            count, size = layer["outliers"], layer["index_bytes"]
            index = index_codes.decode_indices(layer["coding"], tensors["outlier_index"][index_at:index_at + size],
                                                  count, math.prod(segment.shape))
            mean, std = tensors["stats"][stat_at].tolist()
            codes[segment.name] = LayerCode(mean, std, index, tensors["outlier_values"][value_at:value_at + count])
            stat_at, value_at, index_at = stat_at + 1, value_at + count, index_at + size
    code_totals = {name: tensors[name].numel() if name in tensors else 0 for name in code_at}
    tops = tensors[SCALE_TOPS].numel() if SCALE_TOPS in tensors else 0
    if (half_at, code_at, raw_at, index_at, layer_code_at, scale_at, coded_at if meta.get("log_scales") else 0) != (
            tensors["inr_fp16"].numel(), code_totals, tensors["raw"].numel(), tensors["outlier_index"].numel(),
            layer_codes.numel(), layer_scales.numel(), tops):
        raise ValueError("big2small artifact: payload size does not match its layer list")

    groups = []
    stacks = stacks_of(targets, {key: {inr_bits[key]: width} for key, width in widths.items() if width})
    for (dims, outputs, width, _, bits), members in stacks.items():
        net = build_network(inr, dims, outputs, width, [0] * len(members))
        code_rows = [rows[t.key][1] for t in members]
        unpack_inr(net, torch.stack([rows[t.key][0] for t in members]),
                   torch.stack(code_rows) if bits < 16 else None, bits)
        groups.append(INRGroup(members, net, bits))
    with torch.no_grad():
        decoded.update(reconstruct(groups, codes))
    orders = _unpack_orders(meta["permutation"], tensors.get("permutation"))
    for name, weight in decoded.items():
        set_parameter(model, name, _restore_order(weight, meta["permutation"]["layers"].get(name), orders))
    _set_tuned(model, meta, tensors)
    return model


def _set_tuned(model: nn.Module, meta: dict, tensors: dict[str, torch.Tensor]) -> None:
    """The tuned 1-D parameters into `model`: fp16 values, or changes (tuned_bits) added to the model's own."""
    names = tuned_names(model, meta["replaced"]) if "tuned" in meta else []
    sizes = [model.get_parameter(name).numel() for name in names]
    if "tuned_bits" in meta:
        if "tuned" in tensors or not names:
            raise ValueError("big2small artifact: tuned_bits without tuned changes, or beside fp16 tuned values")
        for name, change in zip(names, tuned_values.decode(tensors, sizes, meta["tuned_bits"]), strict=True):
            own = model.get_parameter(name).detach()
            set_parameter(model, name, own + change.reshape(own.shape))
        return
    if ("tuned" in meta) != ("tuned" in tensors) or tensors.get("tuned", torch.zeros(0)).numel() != meta.get("tuned", 0):
        raise ValueError("big2small artifact: its tuned values do not match the header's count")
    for name, values in zip(names, tensors["tuned"].float().split(sizes) if names else [], strict=True):
        set_parameter(model, name, values.reshape(model.get_parameter(name).shape))




def _cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([p.reshape(-1) for p in parts]).to(dtype) if parts else torch.zeros(0, dtype=dtype)


def _unpack_orders(meta: dict, packed: torch.Tensor | None) -> list[torch.Tensor]:
    orders, offset = [], 0
    for space in meta["spaces"]:
        size = math.ceil(space["size"] * space["bits"] / 8)
        order = unpack_uint(packed[offset : offset + size], space["bits"], space["size"])
        if sorted(order.tolist()) != list(range(space["size"])):
            raise ValueError("big2small artifact: a stored channel order is not a permutation")
        orders.append(order)
        offset += size
    return orders


def _restore_order(weight: torch.Tensor, spaces: list | None, orders: list[torch.Tensor]) -> torch.Tensor:
    """Undo the channel permutation: permuted channel j is original channel order[j]."""
    if not spaces:
        return weight
    out_space, in_space = spaces
    if out_space is not None:
        weight = weight.index_select(0, torch.argsort(orders[out_space]))
    if in_space is not None:
        weight = weight.index_select(1, torch.argsort(orders[in_space]))
    return weight
