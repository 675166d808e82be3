"""Values as well as shapes: an artifact whose numbers are NaN, inf or out of the range its compressor writes is
refused on load with an ArtifactError naming the tensor, for every compressor (forged with the checksum
recomputed, as a forger would). A fit that produces such numbers is a FittingError before anything is written."""

import dataclasses

import pytest
import torch

import big2small
from big2small.codec import Compressed, read_artifact, write_artifact
from big2small.errors import ArtifactError, FittingError
from big2small.rebuilding import rebuild_model, uncompressed_state
from tests.conftest import PROJECT_ROOT
from tests.methods.roundtrip import digits_sized_cnn

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "format_v1"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.safetensors") if p.stem != "rebuilt_logits")


def _fixture(name: str) -> Compressed:
    return read_artifact(FIXTURES / f"{name}.safetensors")


def _load(compressed: Compressed, tmp_path):
    path = tmp_path / "forged.safetensors"
    write_artifact(compressed, path)
    return big2small.load(path, digits_sized_cnn())


def _poisoned(compressed: Compressed, name: str, value: float, where: int = 0) -> Compressed:
    tensors = dict(compressed.tensors)
    flat = tensors[name].clone().reshape(-1)
    flat[where] = value
    tensors[name] = flat.reshape(tensors[name].shape)
    return dataclasses.replace(compressed, tensors=tensors)


def _floating(name: str) -> list[str]:
    return [t for t, tensor in sorted(_fixture(name).tensors.items()) if tensor.is_floating_point() and tensor.numel()]


@pytest.mark.parametrize("name, tensor", [(n, t) for n in NAMES for t in _floating(n)])
@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_a_nan_or_inf_in_any_floating_tensor_is_refused_naming_it(name, tensor, poison, tmp_path):
    with pytest.raises(ArtifactError, match=f"tensor '{tensor}' holds NaN or inf"):
        _load(_poisoned(_fixture(name), tensor, poison, where=-1), tmp_path)


def test_the_quant_payload_replaced_by_nan_is_an_artifact_error_not_a_fitting_error(tmp_path):
    compressed = big2small.compress(digits_sized_cnn(), "quant")
    big2small.save(compressed, tmp_path / "quant.safetensors")
    forged = read_artifact(tmp_path / "quant.safetensors")
    forged.tensors["ranges"] = torch.full_like(forged.tensors["ranges"], float("nan"))
    write_artifact(forged, tmp_path / "quant.safetensors")
    with pytest.raises(ArtifactError, match="tensor 'ranges' holds NaN or inf"):
        big2small.load(tmp_path / "quant.safetensors", digits_sized_cnn())


@pytest.mark.parametrize("entry, value, message", [
    ("features.1.running_mean", float("nan"), "'uncompressed/features.1.running_mean' holds NaN or inf"),
    ("features.1.weight", float("inf"), "'uncompressed/features.1.weight' holds NaN or inf"),
    ("features.1.running_var", -0.5, "'uncompressed/features.1.running_var' holds -0.5, its values must be >= 0"),
])
def test_stored_state_is_checked_too(entry, value, message, tmp_path):
    compressed = _fixture("magnitude")
    state = uncompressed_state(digits_sized_cnn(), compressed.meta["replaced"])
    state[entry].reshape(-1)[0] = value
    with pytest.raises(ArtifactError, match=message):
        _load(dataclasses.replace(compressed, uncompressed=state), tmp_path)


@pytest.mark.parametrize("name, tensor, value, message", [
    ("quant", "ranges", -0.25, "'ranges' holds -0.25, its values must be >= 0"),        # a channel's max |w|
    ("hyper", "ranges", 100.0, "lowest value lies above its highest"),                  # a layer's (lo, hi)
    ("big2small", "stats", 0.0, r"'stats \(std\)' holds 0, its values must be > 0"),    # [mean, std] per layer
])
def test_finite_values_a_compressor_never_writes_are_refused(name, tensor, value, message, tmp_path):
    with pytest.raises(ArtifactError, match=message):
        _load(_poisoned(_fixture(name), tensor, value, where={"stats": 1}.get(tensor, 0)), tmp_path)


@pytest.mark.parametrize("name", ["kmeans", "svd", "none", "magnitude", "lq_prune", "id_prune"])
def test_any_finite_value_of_the_other_compressors_still_loads(name, tmp_path):
    tensor = _floating(name)[0]
    rebuilt = _load(_poisoned(_fixture(name), tensor, -1e4), tmp_path)
    assert all(torch.isfinite(p).all() for p in rebuilt.parameters())


def test_finite_values_that_overflow_when_decoded_are_refused_naming_the_parameter():
    forged = _fixture("big2small")
    forged.tensors["stats"] = torch.full_like(forged.tensors["stats"], 3e38)  # w = x * std + mean overflows
    with pytest.raises(ArtifactError, match="decodes into NaN or inf values in parameter"):
        rebuild_model(Compressed.from_bytes(forged.to_bytes()), digits_sized_cnn())


def test_a_nan_in_the_header_is_refused():
    forged = _fixture("big2small")
    forged.meta["inr"]["omega0"] = float("nan")  # Python's json writes it; no JSON reader should take it
    with pytest.raises(ArtifactError, match="JSON constant NaN"):
        Compressed.from_bytes(forged.to_bytes())


def test_a_model_with_nan_weights_is_a_fitting_error_naming_the_layer():
    model = digits_sized_cnn()
    with torch.no_grad():
        model.get_parameter("features.4.weight")[0, 0, 0, 0] = float("nan")
    with pytest.raises(FittingError, match="quant: layer features.4.weight has NaN or inf weights before fitting"):
        big2small.compress(model, "quant")


def test_stored_state_of_another_dtype_is_refused_not_converted(tmp_path):
    compressed = _fixture("quant")
    state = uncompressed_state(digits_sized_cnn(), compressed.meta["replaced"])
    state["features.1.running_mean"] = state["features.1.running_mean"].view(torch.int32)  # same bytes and shape
    with pytest.raises(ArtifactError, match="features.1.running_mean is torch.int32 in the artifact and "
                                            "torch.float32 here"):
        _load(dataclasses.replace(compressed, uncompressed=state), tmp_path)


def test_a_forged_architecture_signature_of_another_type_is_refused():
    forged = big2small.compress(digits_sized_cnn(), "quant")
    forged.config["model"] = 3
    with pytest.raises(ArtifactError, match="made for another architecture: its model had the signature 3"):
        rebuild_model(Compressed.from_bytes(forged.to_bytes()), digits_sized_cnn())


@pytest.mark.parametrize("key", ["depth", "frequencies"])
def test_an_inr_too_deep_to_build_is_refused_before_anything_is_allocated(key):
    forged = _fixture("big2small")
    forged.meta["inr"][key] = 2**31  # a list of 2^31 layers would be built before the payload sizes disagree
    with pytest.raises(ArtifactError, match=f"inr.{key}"):
        rebuild_model(Compressed.from_bytes(forged.to_bytes()), digits_sized_cnn())
