"""Forged and damaged artifacts: refused with ArtifactError, or rebuilt without any other error.

Mutations keep the checksum consistent (the file is re-serialised after the edit, as a forger would), except
the byte flips, which model damage. Artifacts are the version-1 fixtures of every compressor.
- Damage, and structural forgeries (a header value of another JSON type, a tensor of another dtype or length,
  renamed, missing or extra, another compressor's name): refused, or the very same model.
- Value forgeries (a header value replaced by one of the same type, a nearby integer, a deleted entry): may
  also decode to another model, as a different but well-formed artifact would; only a key (HMAC) tells them
  apart. They must still never raise anything but ArtifactError, nor produce non-finite weights.
The suite runs 120 cases per compressor; FUZZ_EXAMPLES=3000 runs more, and -s prints the outcome table.
"""

import copy
import dataclasses
import os
import random
from collections import Counter, defaultdict

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from big2small.codec import Compressed, read_artifact
from big2small.errors import ArtifactError
from big2small.rebuilding import rebuild_model
from tests.conftest import PROJECT_ROOT
from tests.methods.roundtrip import digits_sized_cnn, outputs

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "format_v1"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.safetensors") if p.stem != "rebuilt_logits")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
DTYPES = [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16, torch.bfloat16,
          torch.float32, torch.float64, torch.bool]
ODD_VALUES = [None, True, False, -1, 0, 1, 2, 3, 7, 8, 16, 17, 255, 2**31, 2**62, -(2**40), 0.5, -3.5, 1e300, "",
              "x", "bitmap", "varint", "siren", [], [1], [0, 0], {}, {"a": 1}, [[1, 2], [3]]]


def _leaves(value, path=()):
    """Every (path, value) inside a JSON value, containers included."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _set(root, path, value, delete=False):
    target = root
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def _json_kind(value) -> str:
    return "int" if isinstance(value, int) and not isinstance(value, bool) else type(value).__name__


def _mutate(compressed: Compressed, rng: random.Random) -> tuple[Compressed, bool]:
    """(the forged artifact, whether the edit is structural: refused or harmless, never another model)."""
    forged = dataclasses.replace(compressed, config=copy.deepcopy(compressed.config),
                                 meta=copy.deepcopy(compressed.meta), tensors=dict(compressed.tensors))
    kind = rng.choice(["meta", "meta", "meta", "config", "dtype", "length", "drop", "rename", "extra", "compressor"])
    if kind in ("meta", "config"):
        root = forged.meta if kind == "meta" else forged.config
        paths = [p for p, _ in _leaves(root) if p]
        if not paths:
            return forged, True
        path = rng.choice(paths)
        if rng.random() < 0.2:
            _set(root, path, None, delete=True)
            return forged, False
        _, current = next((p, v) for p, v in _leaves(root) if p == path)
        nearby = [current + d for d in (-2, -1, 1, 2)] if _json_kind(current) == "int" else []
        value = rng.choice(ODD_VALUES + nearby)
        _set(root, path, value)
        return forged, _json_kind(value) != _json_kind(current)
    elif kind == "dtype":
        name = rng.choice(sorted(forged.tensors))
        tensor = forged.tensors[name].contiguous().reshape(-1)
        dtype = rng.choice(DTYPES)
        raw = tensor.view(torch.uint8)
        usable = raw.numel() - raw.numel() % dtype.itemsize
        forged.tensors[name] = raw[:usable].view(dtype) if dtype != torch.bool else raw[:usable].bool()
    elif kind == "length":
        name = rng.choice(sorted(forged.tensors))
        tensor = forged.tensors[name].reshape(-1)
        change = rng.choice([-1, 1, -7, 5, tensor.numel() // 2 + 1])
        forged.tensors[name] = tensor[: max(0, tensor.numel() - change)] if change > 0 else \
            torch.cat([tensor, tensor[: -change]])
    elif kind == "drop":
        forged.tensors.pop(rng.choice(sorted(forged.tensors)))
    elif kind == "rename":
        name = rng.choice(sorted(forged.tensors))
        forged.tensors[name + "_"] = forged.tensors.pop(name)
    elif kind == "extra":
        forged.tensors["extra"] = torch.zeros(3)
    else:
        forged = dataclasses.replace(forged, compressor=rng.choice([n for n in NAMES if n != compressed.compressor]
                                                                    + ["nope", ""]))
    return forged, True


@pytest.fixture(scope="module")
def originals():
    found = {}
    for name in NAMES:
        compressed = read_artifact(FIXTURES / f"{name}.safetensors")
        with torch.no_grad():
            found[name] = (compressed, outputs(rebuild_model(compressed, digits_sized_cnn()), IMAGES))
    return found


OUTCOMES: dict[str, Counter] = defaultdict(Counter)


def _outcome(data: bytes, reference: torch.Tensor, structural: bool = True) -> str:
    try:
        rebuilt = rebuild_model(Compressed.from_bytes(data), digits_sized_cnn())
    except ArtifactError:
        return "refused"
    got = outputs(rebuilt, IMAGES)
    if torch.equal(got, reference):
        return "identical"
    assert not structural, "a structurally forged artifact rebuilt a different model"
    assert all(torch.isfinite(p).all() for p in rebuilt.parameters())
    return "another model"


def teardown_module():
    for name, counts in sorted(OUTCOMES.items()):
        print(f"\n{name}: " + ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())))


@pytest.mark.parametrize("name", NAMES)
def test_checksum_consistent_forgeries_are_refused_or_harmless(name, originals):
    compressed, reference = originals[name]

    @settings(max_examples=EXAMPLES, deadline=5000, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**32 - 1))
    def check(seed):
        forged, structural = _mutate(compressed, random.Random(seed))
        try:
            data = forged.to_bytes()
        except (ValueError, TypeError, RuntimeError):
            return  # not even writable: nothing to load
        outcome = _outcome(data, reference, structural)
        OUTCOMES[name][f"{'structural' if structural else 'value'} forgery {outcome}"] += 1

    check()


@pytest.mark.parametrize("name", NAMES)
def test_damaged_bytes_are_refused(name, originals):
    compressed, reference = originals[name]
    clean = (FIXTURES / f"{name}.safetensors").read_bytes()

    @settings(max_examples=max(EXAMPLES // 4, 10), deadline=5000, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(clean) - 1), st.integers(1, 255), st.booleans())
    def check(position, flip, truncate):
        data = clean[:position] if truncate else clean[:position] + bytes([clean[position] ^ flip]) + clean[position + 1:]
        assert _outcome(data, reference) == "refused"
        OUTCOMES[name]["damage refused"] += 1

    check()


def test_a_deeply_nested_header_is_refused_before_parsing():
    compressed = read_artifact(FIXTURES / "quant.safetensors")
    nested: list = []
    for _ in range(400):  # far deeper than any artifact's header, shallow enough for json.dumps to write
        nested = [nested]
    deep = dataclasses.replace(compressed, meta={**compressed.meta, "deep": nested})
    with pytest.raises(ArtifactError, match="nested deeper than"):
        Compressed.from_bytes(deep.to_bytes())
