"""`nncodec` (MPEG NNC via Fraunhofer HHI's package): the file round trip where the package is installed; the missing
package, bad options and forged headers always (they are refused before nncodec is needed)."""

import dataclasses
import sys

import pytest
import torch

from big2small.codec import Compressed
from big2small.errors import ArtifactError, ConfigError
from big2small.graph.weights import compressible_weights
from big2small.methods.registry import compressor_class
from big2small.rebuilding import rebuild_model
from tests.methods.roundtrip import digits_sized_cnn, outputs, round_trip

NNCodec = compressor_class("nncodec")
IMAGES = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def _hand_made(model, bitstream_bytes=100, **meta):
    """An nncodec artifact's header for `model` around a stand-in stream (what a forger could write)."""
    weights = compressible_weights(model, ("conv", "linear"), 0)
    layers = [{"name": name, "shape": list(w.shape)} for name, w in weights.items()]
    header = {"replaced": list(weights), "layers": layers, **meta}
    return Compressed("nncodec", {}, {"bitstream": torch.zeros(bitstream_bytes, dtype=torch.uint8)}, header)


def _relative_errors(model, rebuilt, names):
    with torch.no_grad():
        return [float((rebuilt.get_parameter(n) - model.get_parameter(n)).norm() / model.get_parameter(n).norm())
                for n in names]


def test_a_missing_package_is_one_config_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncodec", None)  # what `import nncodec` meets where it is not installed
    with pytest.raises(ConfigError) as raised:
        NNCodec(qp=-32)
    assert str(raised.value) == "nncodec is not installed; pip install .[nnc]"


def test_an_artifact_cannot_be_decoded_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncodec", None)
    with pytest.raises(ArtifactError, match=r"nncodec is not installed; pip install \.\[nnc\]"):
        rebuild_model(_hand_made(digits_sized_cnn()), digits_sized_cnn())


@pytest.mark.parametrize("settings, message", [
    ({"qp": 200}, r"qp must be an integer in -128..127"),
    ({"qp": -32.5}, r"qp must be an integer"),
    ({"qp": None}, r"set qp \(-128..127\) or target_ratio"),
    ({"qp_density": 8}, r"qp_density must be an integer in 0..7"),
    ({"dependent_quantization": "yes"}, r"dependent_quantization must be true or false"),
    ({"opt_qp": 1}, r"opt_qp must be true or false"),
    ({"target_ratio": 1.0}, r"target_ratio must be > 1"),
])
def test_bad_options_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        NNCodec(**settings)


@pytest.mark.parametrize("edit, named", [
    (lambda meta: meta.__setitem__("qp_density", 9), "the header has unknown ['qp_density']"),
    (lambda meta: meta["layers"][0].__setitem__("qp", -32), "layers[0] has unknown ['qp']"),
    (lambda meta: meta["layers"][1].__setitem__("shape", [64, 1]), "has shape [64, 1] in the artifact"),
])
def test_a_forged_header_is_refused_before_decoding(edit, named):
    forged = _hand_made(digits_sized_cnn())
    edit(forged.meta)
    with pytest.raises(ArtifactError) as refused:
        rebuild_model(forged, digits_sized_cnn())
    assert named in str(refused.value)


def test_a_stream_longer_than_any_coding_of_the_weights_is_refused_before_decoding():
    model = digits_sized_cnn()
    weights = sum(w.numel() for w in compressible_weights(model, ("conv", "linear"), 0).values())
    with pytest.raises(ArtifactError, match="tensor 'bitstream' holds"):
        rebuild_model(_hand_made(model, bitstream_bytes=16 * weights + 10_000), model)


@pytest.fixture
def nnc():
    return pytest.importorskip("nncodec", reason="needs the optional package nncodec (pip install .[nnc])")


def test_the_artifact_is_the_bitstream_plus_a_small_header_and_rebuilds_close(nnc, tmp_path):
    model = digits_sized_cnn()
    compressed, rebuilt, ratio = round_trip(NNCodec(qp=-40), model, tmp_path)  # asserts bytes = file size
    size = (tmp_path / "artifact.safetensors").stat().st_size
    stream = compressed.tensors["bitstream"].numel()
    assert 0 < size - stream < 4096, f"header of {size - stream} bytes around a {stream}-byte stream"
    assert max(_relative_errors(model, rebuilt, compressed.meta["replaced"])) < 0.05
    torch.testing.assert_close(outputs(rebuilt, IMAGES), outputs(model, IMAGES), rtol=0.05, atol=0.05)
    assert ratio > 2


def test_coarser_qp_gives_fewer_bytes_and_more_error(nnc, tmp_path):
    model = digits_sized_cnn()
    sizes, errors = [], []
    for qp in (-40, -32, -24, -16):
        compressed, rebuilt, _ = round_trip(NNCodec(qp=qp), model, tmp_path)
        sizes.append((tmp_path / "artifact.safetensors").stat().st_size)
        errors.append(sum(_relative_errors(model, rebuilt, compressed.meta["replaced"])))
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    assert errors == sorted(errors) and len(set(errors)) == 4


def test_the_same_model_and_settings_give_the_same_bytes(nnc):
    model = digits_sized_cnn()
    first, second = (NNCodec(target_ratio=6).compress(model).to_bytes() for _ in range(2))
    assert first == second


@pytest.mark.parametrize("target, opt_qp", [(6.0, False), (12.0, False), (12.0, True)])
def test_target_ratio_is_met_by_a_searched_qp(nnc, target, opt_qp, tmp_path):
    compressed, _, ratio = round_trip(NNCodec(target_ratio=target, opt_qp=opt_qp), digits_sized_cnn(), tmp_path)
    assert target <= ratio <= 1.05 * target
    assert compressed.config["qp"] is None  # target_ratio decides
    qps = {stats["qp"] for stats in compressed.layer_stats.values()}
    assert max(qps) - min(qps) <= 1  # one searched qp, a step finer on some tensors to land on the target


def test_a_stream_of_other_tensors_than_the_header_lists_is_refused(nnc):
    model = digits_sized_cnn()
    other = NNCodec(qp=-32).compress(torch.nn.Sequential(torch.nn.Linear(7, 5, bias=False)))
    forged = dataclasses.replace(_hand_made(model), tensors=dict(other.tensors))
    with pytest.raises(ArtifactError, match="does not decode into this model: ValueError: the bitstream"):
        rebuild_model(forged, model)
