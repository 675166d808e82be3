"""Seeded forgeries of artifacts and what loading them gives: the engine of tests/test_artifact_fuzz.py and of
benchmarks/artifact_fuzz.py (the long run).

The artifacts are the version-1 fixtures of every compressor, each with the stored state of its model (as
`big2small.save` writes by default), a Big2Small artifact of layer codes alone (its default on this model), and
entropy-coded quant and Big2Small artifacts of the same architecture with peaked (Laplace) weights, whose codes
are rANS streams (tables, stream lengths and symbol counts a forger controls), parsed once. Case `i` of a compressor draws its forgery from
`random.Random(f"{compressor}:{i}")`, so any case can be replayed alone. Every forgery but the damage ones keeps
the checksum consistent (the artifact is re-serialised after the edit, as a forger would).

Kinds, and what loading may give (refused: ArtifactError; same: the clean artifact's model; other: another
well-formed model, which only a key (HMAC) tells apart from the real one):
- damage: a flipped byte or a truncation of the file: refused or same.
- structure: a header value of another JSON type, a NaN or Infinity in the header, a tensor of another dtype,
  length or shape, renamed, missing or extra, another compressor's name: refused or same.
- non-finite: a NaN or inf written into a floating tensor, stored state included: refused.
- header value: a header value replaced by one of the same type, a nearby integer, a deleted entry: any outcome.
- tensor value: tensor elements replaced by extreme, zero, negative or random finite values (bytes for integer
  tensors): any outcome.
Whatever the kind, nothing but ArtifactError may be raised, a rebuilt model never holds NaN or inf, and no case
allocates more than MEMORY_MARGIN_BYTES (the cases run under that address-space limit, and a refusal that
ran out of memory fails the case).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import resource
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

import big2small
from big2small.codec import UNCOMPRESSED_PREFIX, Compressed, read_artifact
from big2small.errors import ArtifactError
from big2small.rebuilding import rebuild_model, uncompressed_state
from tests.conftest import PROJECT_ROOT
from tests.methods.roundtrip import digits_sized_cnn

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "format_v1"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.safetensors") if p.stem != "rebuilt_logits")
CODES_ONLY = "big2small-codes"
# Artifacts with coded streams: (compressor, settings, the stream codings some layer must use)
CODED = {"quant-rans": ("quant", {"bits": 4}, {"rans", "context"}),
         "big2small-rans": ("big2small", {"target_ratio": 8, "storage": {"codes_below": 10**9},
                                          "refinement": {"enabled": False}}, {"rans", "context"})}
ORIGINALS = sorted([*NAMES, CODES_ONLY, *CODED])
KINDS = ("damage", "structure", "non-finite", "header value", "tensor value")
OUTCOMES = ("refused", "same", "other")
ALLOWED = {"damage": {"refused", "same"}, "structure": {"refused", "same"}, "non-finite": {"refused"},
           "header value": set(OUTCOMES), "tensor value": set(OUTCOMES)}
DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64, torch.bool]
ODD_VALUES = [None, True, False, -1, 0, 1, 2, 3, 7, 8, 16, 17, 255, 2**31, 2**62, -(2**40), 0.5, -3.5, 1e300, "",
              "x", "bitmap", "varint", "siren", [], [1], [0, 0], {}, {"a": 1}, [[1, 2], [3]]]
# A case may allocate this much beyond the process's size; the digits model and its artifacts take a few MB.
MEMORY_MARGIN_BYTES = 2 << 30
OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "out of memory")
ODD_FLOATS = [0.0, -0.0, 1.0, -1.0, 1e-30, -1e-30, 1e-8, 65504.0, -65504.0, 3e38, -3e38, 1e4, -1e4]


@dataclass
class Original:
    """One compressor's clean artifact: parsed, serialised, and the state of the model it rebuilds."""

    compressed: Compressed
    data: bytes
    state: dict[str, torch.Tensor]


def load_originals(names: list[str] = ORIGINALS) -> dict[str, Original]:
    found = {}
    for name in names:
        if name == CODES_ONLY:  # Big2Small's default on this model: every layer its own codes (no fixture has them)
            compressed = big2small.compress(digits_sized_cnn(), "big2small", target_ratio=4,
                                            storage={"codes_below": 10**9}, refinement={"enabled": False})
        elif name in CODED:
            compressor, settings, codings = CODED[name]
            compressed = big2small.compress(peaked_digits_cnn(), compressor, **{"target_ratio": None, **settings})
            assert codings <= {layer.get("coding") or layer.get("code_coding") for layer in compressed.meta["layers"]}
        else:
            compressed = read_artifact(FIXTURES / f"{name}.safetensors")
            compressed.uncompressed = uncompressed_state(digits_sized_cnn(), compressed.meta["replaced"])
        data = compressed.to_bytes()
        rebuilt = rebuild_model(Compressed.from_bytes(data), digits_sized_cnn())
        found[name] = Original(compressed, data, {k: v.clone() for k, v in rebuilt.state_dict().items()})
    return found


def peaked_digits_cnn() -> torch.nn.Module:
    """The digits-sized CNN with Laplace weights, as trained weights are: codes far from uniform."""
    model = digits_sized_cnn()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and parameter.dim() > 1:
                uniform = torch.rand(parameter.shape, generator=generator).clamp(1e-6, 1 - 1e-6) - 0.5
                parameter.copy_(-0.05 * uniform.sign() * torch.log1p(-2 * uniform.abs()))
    return model


def run_case(name: str, index: int, original: Original, model: torch.nn.Module) -> tuple[str, str]:
    """(kind, outcome) of case `index` of compressor `name`; AssertionError when the outcome is not allowed for
    its kind or the rebuilt model is not finite, and any error other than ArtifactError passes through."""
    rng = random.Random(f"{name}:{index}")
    kind = rng.choices(KINDS, weights=(2, 4, 1, 2, 3))[0]
    data = _damaged(original.data, rng) if kind == "damage" else _forged(original.compressed, kind, rng).to_bytes()
    outcome = outcome_of(data, original.state, model)
    assert outcome in ALLOWED[kind], f"case {name}:{index} ({kind}) gave {outcome}"
    return kind, outcome


def outcome_of(data: bytes, reference: dict[str, torch.Tensor], model: torch.nn.Module) -> str:
    try:
        rebuilt = rebuild_model(Compressed.from_bytes(data), model)
    except ArtifactError as error:
        assert not any(sign in str(error) for sign in OUT_OF_MEMORY), f"an unbounded allocation: {error}"
        return "refused"
    state = rebuilt.state_dict()
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), "a non-finite model"
    same = state.keys() == reference.keys() and all(
        state[k].dtype == reference[k].dtype and torch.equal(state[k], reference[k]) for k in reference)
    return "same" if same else "other"


def run_cases(name: str, original: Original, cases: int, start: int = 0) -> Counter:
    """Counts of (kind, outcome) over cases start .. start + cases - 1."""
    model = digits_sized_cnn()
    with bounded_memory():
        return Counter(run_case(name, index, original, model) for index in range(start, start + cases))


@contextmanager
def bounded_memory(extra_bytes: int = MEMORY_MARGIN_BYTES):
    """The process may grow by `extra_bytes` at most: a larger allocation fails inside the case, where
    outcome_of names it, instead of taking the machine's memory (where /proc tells the process's size)."""
    if not Path("/proc/self/statm").exists():
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = used + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, used + extra_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _damaged(clean: bytes, rng: random.Random) -> bytes:
    position = rng.randrange(len(clean))
    if rng.random() < 0.3:
        return clean[:position]
    return clean[:position] + bytes([clean[position] ^ rng.randrange(1, 256)]) + clean[position + 1:]


def _forged(compressed: Compressed, kind: str, rng: random.Random) -> Compressed:
    forged = dataclasses.replace(compressed, tensors=dict(compressed.tensors),
                                 uncompressed=dict(compressed.uncompressed))
    if kind in ("structure", "header value") and rng.random() < (0.4 if kind == "structure" else 1.0):
        forged.config, forged.meta = copy.deepcopy(compressed.config), copy.deepcopy(compressed.meta)
        _forge_header(forged, rng, same_type=kind == "header value")
    elif kind == "structure":
        _forge_layout(forged, rng)
    else:
        _forge_values(forged, rng, finite=kind == "tensor value")
    return forged


def _forge_header(forged: Compressed, rng: random.Random, same_type: bool) -> None:
    root = forged.meta if rng.random() < 0.75 else forged.config
    paths = [p for p, _ in _leaves(root) if p]
    path = rng.choice(paths)
    current = _get(root, path)
    if same_type:
        if rng.random() < 0.2:
            _set(root, path, None, delete=True)
            return
        nearby = [current + d for d in (-2, -1, 1, 2)] if _json_kind(current) == "int" else []
        choices = [v for v in ODD_VALUES + nearby if _same_type(v, current)]
        _set(root, path, rng.choice(choices) if choices else current)
        return
    choices = [v for v in ODD_VALUES if not _same_type(v, current)] + [math.nan, math.inf, -math.inf]
    _set(root, path, rng.choice(choices))


def _forge_layout(forged: Compressed, rng: random.Random) -> None:
    stored = rng.random() < 0.25
    tensors = forged.uncompressed if stored else forged.tensors
    name = rng.choice(sorted(tensors))
    tensor = tensors[name].contiguous().reshape(-1)
    change = rng.choice(["dtype", "length", "shape", "drop", "rename", "extra", "compressor"])
    if change == "dtype":
        dtype = rng.choice([d for d in DTYPES if d != tensor.dtype])
        raw = tensor.view(torch.uint8)
        usable = raw.numel() - raw.numel() % dtype.itemsize
        tensors[name] = raw[:usable].view(dtype) if dtype != torch.bool else raw[:usable].bool()
    elif change == "length":
        cut = rng.choice([-1, 1, -7, 5, tensor.numel() // 2 + 1])
        tensors[name] = tensor[: max(0, tensor.numel() - cut)] if cut > 0 else torch.cat([tensor, tensor[:-cut]])
    elif change == "shape":
        tensors[name] = tensor.reshape(-1, 1) if tensor.dim() != 2 or tensors[name].shape[1] != 1 else tensor
    elif change == "drop":
        tensors.pop(name)
    elif change == "rename":
        tensors[name + "_"] = tensors.pop(name)
    elif change == "extra":
        tensors[rng.choice(["extra", "features.9.weight"])] = torch.zeros(3)
    else:
        forged.compressor = rng.choice([n for n in NAMES if n != forged.compressor] + ["nope", ""])


def _forge_values(forged: Compressed, rng: random.Random, finite: bool) -> None:
    pools = [("", forged.tensors), (UNCOMPRESSED_PREFIX, forged.uncompressed)]
    candidates = [(tensors, name) for _, tensors in pools for name, t in sorted(tensors.items())
                  if t.numel() and (finite or t.is_floating_point())]
    tensors, name = rng.choice(candidates)
    flat = tensors[name].clone().reshape(-1)
    positions = [rng.randrange(flat.numel()) for _ in range(rng.choice([1, 1, 2, 8]))]
    for position in positions:
        flat[position] = _odd_value(flat, position, rng, finite)
    tensors[name] = flat.reshape(tensors[name].shape)


def _odd_value(flat: torch.Tensor, position: int, rng: random.Random, finite: bool):
    if not finite:
        return rng.choice([math.nan, math.inf, -math.inf])
    if flat.dtype == torch.bool:
        return not bool(flat[position])
    if not flat.is_floating_point():
        info = torch.iinfo(flat.dtype)
        return rng.choice([info.min, info.max, 0, 1, -1 if info.min < 0 else 2, rng.randint(info.min, info.max)])
    largest = torch.finfo(flat.dtype).max
    value = rng.choice([*ODD_FLOATS, -float(flat[position]), rng.gauss(0.0, 10.0)])
    return max(-largest, min(largest, value))


def _leaves(value, path=()):
    """Every (path, value) inside a JSON value, containers included."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _get(root, path):
    for key in path:
        root = root[key]
    return root


def _set(root, path, value, delete=False):
    target = _get(root, path[:-1])
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def _json_kind(value) -> str:
    return "int" if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__


def _same_type(value, current) -> bool:
    """Of the same JSON type; an integer also passes for a float (30 is as good a SIREN omega0 as 30.0)."""
    return _json_kind(value) == _json_kind(current) or (_json_kind(value), _json_kind(current)) == ("int", "float")


def table(counts: dict[str, Counter]) -> list[str]:
    """Markdown rows: per compressor and kind, cases refused / same model / another model."""
    rows = ["| compressor | kind | cases | refused | same model | different valid model |",
            "|---|---|---|---|---|---|"]
    for name in sorted(counts):
        for kind in KINDS:
            got = [counts[name][(kind, outcome)] for outcome in OUTCOMES]
            if sum(got):
                rows.append(f"| {name} | {kind} | {sum(got)} | " + " | ".join(str(g) for g in got) + " |")
    totals = [sum(c[(k, o)] for c in counts.values() for k in KINDS) for o in OUTCOMES]
    rows.append(f"| all | all | {sum(totals)} | " + " | ".join(str(t) for t in totals) + " |")
    return rows
