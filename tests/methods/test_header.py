"""Each compressor's declared header (methods/header.py): a field that is missing, unknown or out of range, or a
tensor of another size than the header implies, is refused naming it, before anything is decoded."""

import copy
import dataclasses

import pytest
import torch

from big2small.codec import read_artifact
from big2small.errors import ArtifactError
from big2small.methods.registry import available, compressor_class
from big2small.rebuilding import rebuild_model
from tests.conftest import PROJECT_ROOT
from tests.methods.roundtrip import digits_sized_cnn

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "format_v1"
DECLARED = [name for name in available() if compressor_class(name).META_FIELDS is not None]
# The forgeries below edit the version-1 fixtures; a compressor added since tests its header in its own file.
WITH_FIXTURE = [name for name in DECLARED if (FIXTURES / f"{name}.safetensors").is_file()]


def _artifact(name):
    return read_artifact(FIXTURES / f"{name}.safetensors")


def _refusal(compressed) -> str:
    with pytest.raises(ArtifactError) as refused:
        rebuild_model(compressed, digits_sized_cnn())
    return str(refused.value)


def _forged(compressed, edit):
    forged = dataclasses.replace(compressed, meta=copy.deepcopy(compressed.meta), tensors=dict(compressed.tensors))
    edit(forged)
    return forged


def test_the_baselines_declare_their_headers():
    assert set(DECLARED) == {"hyper", "kmeans", "lq_prune", "magnitude", "nncodec", "quant", "svd"}


@pytest.mark.parametrize("name", WITH_FIXTURE)
def test_an_unknown_layer_field_is_named(name):
    forged = _forged(_artifact(name), lambda c: c.meta["layers"][0].__setitem__("offset", 3))
    assert "layers[0] has unknown ['offset']" in _refusal(forged)


@pytest.mark.parametrize("name", WITH_FIXTURE)
def test_a_missing_layer_field_is_named(name):
    field = next(iter(compressor_class(name).LAYER_FIELDS))
    forged = _forged(_artifact(name), lambda c: c.meta["layers"][1].pop(field))
    assert f"layers[1] lacks ['{field}']" in _refusal(forged)


@pytest.mark.parametrize("name, field, value", [("quant", "bits", 17), ("quant", "bits", 4.0), ("kmeans", "centroids", 0),
                                                ("hyper", "bits", True), ("magnitude", "bits", 17),
                                                ("lq_prune", "count", -1), ("svd", "rank", 0)])
def test_an_out_of_range_layer_field_is_named(name, field, value):
    forged = _forged(_artifact(name), lambda c: c.meta["layers"][0].__setitem__(field, value))
    assert f"layers[0].{field} is {value!r}" in _refusal(forged)


@pytest.mark.parametrize("name, tensor", [("quant", "codes"), ("kmeans", "codebooks"), ("hyper", "ranges"),
                                          ("svd", "values"), ("id_prune", "weights"), ("id_prune", "kept")])
def test_a_tensor_longer_than_its_header_implies_is_refused_before_decoding(name, tensor):
    def extend(compressed):
        values = compressed.tensors[tensor]
        compressed.tensors[tensor] = torch.cat([values, values[:1]])

    assert f"tensor {tensor!r} holds" in _refusal(_forged(_artifact(name), extend))


def test_a_pruned_artifact_keeps_at_most_every_weight():
    model = digits_sized_cnn()

    def extend(compressed):
        every_weight = sum(model.get_parameter(name).numel() for name in compressed.meta["replaced"])
        compressed.tensors["values"] = torch.zeros(every_weight + 1)

    assert "tensor 'values' holds" in _refusal(_forged(_artifact("magnitude"), extend))


def test_an_unknown_header_field_is_named():
    forged = _forged(_artifact("hyper"), lambda c: c.meta.__setitem__("scale", 2))
    assert "the header has unknown ['scale']" in _refusal(forged)
    forged = _forged(_artifact("hyper"), lambda c: c.meta.__setitem__("group_size", 9))
    assert "group_size is 9, not an integer in 1..8" in _refusal(forged)


@pytest.mark.parametrize("edit, named", [
    (lambda c: c.meta["prunes"][0].__setitem__("keep", 10_000), "prunes[0].keep is 10000"),
    (lambda c: c.meta["prunes"][0].__setitem__("producer", "features.9"), "prunes[0].producer 'features.9'"),
    (lambda c: c.meta["modules"][0].__setitem__("shape", [10_000, 1, 3, 3]), "modules[0].shape [10000, 1, 3, 3]"),
    (lambda c: c.meta["modules"][0].__setitem__("extra", 1), "modules[0] has unknown ['extra']"),
    (lambda c: c.tensors.__setitem__("kept", c.tensors["kept"] + 1000), "a kept channel of"),
])
def test_id_prune_checks_its_header_against_the_model(edit, named):
    assert named in _refusal(_forged(_artifact("id_prune"), edit))
