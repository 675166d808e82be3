"""Forged and damaged artifacts, 12,096 seeded cases over every compressor (Big2Small's layer codes and rANS-coded streams included): refused with ArtifactError, the very
same model, or (value forgeries only) another well-formed one, and never a non-finite model or another error.

The forgeries and what each kind may give are in tests/artifact_forgery.py; a failure names its case
(`compressor:index`), which replays alone. FUZZ_CASES sets the cases per artifact (1,008 by default; the long
run with its outcome table is benchmarks/artifact_fuzz.py), and -s prints the table of this run.
"""

import dataclasses
import os
from collections import Counter

import pytest

from big2small.codec import Compressed, read_artifact
from big2small.errors import ArtifactError
from tests.artifact_forgery import ALLOWED, FIXTURES, KINDS, ORIGINALS, load_originals, run_cases, table

CASES = int(os.environ.get("FUZZ_CASES", "1008"))
COUNTS: dict[str, Counter] = {}


@pytest.fixture(scope="module")
def originals():
    return load_originals()


def teardown_module():
    if COUNTS:
        print("\n" + "\n".join(table(COUNTS)))


@pytest.mark.parametrize("name", ORIGINALS)
def test_forged_and_damaged_artifacts_are_refused_or_harmless(name, originals):
    counts = run_cases(name, originals[name], CASES)  # raises on the first case that breaks its kind's rule
    COUNTS[name] = counts
    assert sum(counts.values()) == CASES
    assert {kind for kind, _ in counts} == set(KINDS), "every kind of forgery was drawn"
    assert all(outcome in ALLOWED[kind] for kind, outcome in counts)


def test_the_suite_runs_at_least_10000_cases():
    assert CASES * len(ORIGINALS) >= 10_000 or "FUZZ_CASES" in os.environ


def test_a_deeply_nested_header_is_refused_before_parsing():
    compressed = read_artifact(FIXTURES / "quant.safetensors")
    nested: list = []
    for _ in range(400):  # far deeper than any artifact's header, shallow enough for json.dumps to write
        nested = [nested]
    deep = dataclasses.replace(compressed, meta={**compressed.meta, "deep": nested})
    with pytest.raises(ArtifactError, match="nested deeper than"):
        Compressed.from_bytes(deep.to_bytes())
