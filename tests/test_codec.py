import base64
import hashlib
import json
import os
import zlib

import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from big2small import codec
from big2small.codec import HEADER_TENSOR, MAX_HEADER_BYTES, Compressed, read_artifact, write_artifact
from big2small.errors import ArtifactError
from big2small.header_dictionary import HEADER_DICTIONARY


def _sample() -> Compressed:
    tensors = {"codes": torch.arange(10, dtype=torch.uint8), "scales": torch.tensor([0.5, 2.0], dtype=torch.float16)}
    return Compressed("quant", {"bits": 4}, tensors, {"replaced": ["a.weight"], "layers": [{"shape": [2, 5]}]})


def test_round_trip_preserves_everything_and_size_is_file_size(tmp_path):
    path = tmp_path / "a.safetensors"
    size = write_artifact(_sample(), path)
    assert size == path.stat().st_size
    loaded = read_artifact(path)
    assert loaded.compressor == "quant" and loaded.config == {"bits": 4}
    assert loaded.meta == {"replaced": ["a.weight"], "layers": [{"shape": [2, 5]}]}
    assert torch.equal(loaded.tensors["codes"], torch.arange(10, dtype=torch.uint8))
    assert loaded.tensors["scales"].dtype == torch.float16


def test_truncated_artifact_is_rejected(tmp_path):
    path = tmp_path / "a.safetensors"
    write_artifact(_sample(), path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        read_artifact(path)


def test_altered_tensor_byte_fails_checksum(tmp_path):
    path = tmp_path / "a.safetensors"
    write_artifact(_sample(), path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # last byte belongs to the tensor payload
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_artifact(path)


def _wrapper(data: bytes) -> dict:
    """The JSON the file's `big2small` metadata entry holds."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(json.loads(data[8:8 + length])["__metadata__"]["big2small"])


def _deflate(text: bytes, dictionary: bytes = HEADER_DICTIONARY) -> bytes:
    """Raw DEFLATE as a version-4 header is stored (from the preset dictionary; b"": none, as versions 2 and 3)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=dictionary)
    return packer.compress(text) + packer.flush()


def _rewritten(data: bytes, stored_header: bytes | None = None, **fields) -> bytes:
    """The file `data` with its wrapper's `fields` replaced and, when given, `stored_header` as its header tensor."""
    tensors = safetensors_load(data)
    if stored_header is not None:
        tensors[HEADER_TENSOR] = torch.frombuffer(bytearray(stored_header), dtype=torch.uint8)
    return safetensors_save(tensors, metadata={"big2small": json.dumps({**_wrapper(data), **fields})})


def _stored_header(data: bytes) -> dict:
    unpacker = zlib.decompressobj(-15, zdict=HEADER_DICTIONARY)
    return json.loads(unpacker.decompress(safetensors_load(data)[HEADER_TENSOR].numpy().tobytes()))


def test_the_header_is_stored_deflated_and_costs_a_fraction_of_its_json(tmp_path):
    names = [f"layer{i}.block{j}.conv{k}.weight" for i in range(4) for j in range(6) for k in range(2)]
    meta = {"replaced": names, "layers": [{"name": n, "shape": [64, 64, 3, 3], "bits": 3} for n in names]}
    compressed = Compressed("quant", {"bits": 4}, {"codes": torch.zeros(16, dtype=torch.uint8)}, meta)
    data = compressed.to_bytes()
    assert b"conv1.weight" not in data and _wrapper(data)["format_version"] == "4"
    assert _stored_header(data)["compressor"] == "quant"
    assert len(data) < len(json.dumps(meta)) / 4
    assert Compressed.from_bytes(data).meta == meta


def test_the_header_dictionary_is_frozen():
    # Every version-4 artifact is inflated from exactly these bytes: a new dictionary needs a new format version.
    assert hashlib.sha256(HEADER_DICTIONARY).hexdigest() == \
        "4d78b18b0745394bafc8bcf8d977de4e7766f8b9554d13b1ce178de91dbff600"


def test_the_dictionary_makes_a_usual_header_a_fraction_of_its_plain_deflate():
    from big2small import compress
    from tests.methods.roundtrip import digits_sized_cnn

    data = compress(digits_sized_cnn(seed=3), "quant", target_ratio=6).to_bytes()
    stored = safetensors_load(data)[HEADER_TENSOR].numpy().tobytes()
    plain = _deflate(json.dumps(_stored_header(data), sort_keys=True, separators=(",", ":")).encode(), b"")
    assert len(stored) < len(plain) / 2


def test_the_size_depends_on_the_shapes_alone():
    # The checksum is outside the deflated header, so a payload of zeros sizes the written file to the byte.
    zeros = Compressed("quant", {"bits": 4}, {"codes": torch.zeros(300, dtype=torch.uint8),
                                              "scales": torch.zeros(7, dtype=torch.float16)}, {"replaced": ["a"]})
    values = Compressed("quant", {"bits": 4}, {"codes": torch.randint(0, 256, (300,), dtype=torch.uint8),
                                               "scales": torch.randn(7).half()}, {"replaced": ["a"]})
    assert len(zeros.to_bytes()) == len(values.to_bytes())
    assert len(zeros.to_bytes(b"key")) == len(values.to_bytes(b"key"))


def test_empty_tensors_are_listed_not_stored_and_come_back():
    tensors = {"codes": torch.arange(4, dtype=torch.uint8), "stats": torch.zeros(0, 2),
               "outliers": torch.zeros(0, dtype=torch.float16), "index": torch.zeros(3, 0, dtype=torch.int64)}
    data = Compressed("quant", {}, tensors, {}).to_bytes()
    assert sorted(safetensors_load(data)) == sorted(["codes", HEADER_TENSOR])
    loaded = Compressed.from_bytes(data).tensors
    assert sorted(loaded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape


def test_a_version_2_file_is_still_read():
    data = _sample().to_bytes()
    header = {**_stored_header(data), "format_version": "2", "checksum": None}
    tensors = {name: t for name, t in safetensors_load(data).items() if name != HEADER_TENSOR}
    header["checksum"] = codec._checksum({k: v for k, v in header.items() if k != "checksum"}, tensors)
    wrapper = {"format": "big2small-artifact", "format_version": "2",
               "header": base64.b85encode(_deflate(json.dumps(header).encode(), b"")).decode()}
    loaded = Compressed.from_bytes(safetensors_save(tensors, metadata={"big2small": json.dumps(wrapper)}))
    assert loaded.meta == _sample().meta and torch.equal(loaded.tensors["codes"], _sample().tensors["codes"])


def test_a_version_3_file_is_still_read():
    data = _sample().to_bytes()
    header = {**_stored_header(data), "format_version": "3"}
    tensors = {name: t for name, t in safetensors_load(data).items() if name != HEADER_TENSOR}
    wrapper = {"format": "big2small-artifact", "format_version": "3", "checksum": codec._checksum(header, tensors)}
    tensors[HEADER_TENSOR] = torch.frombuffer(bytearray(_deflate(json.dumps(header).encode(), b"")), dtype=torch.uint8)
    loaded = Compressed.from_bytes(safetensors_save(tensors, metadata={"big2small": json.dumps(wrapper)}))
    assert loaded.meta == _sample().meta and torch.equal(loaded.tensors["codes"], _sample().tensors["codes"])


def test_altered_header_fails_checksum(tmp_path):
    data = _sample().to_bytes()
    header = _stored_header(data)
    header["compressor"] = "quanx"
    path = tmp_path / "a.safetensors"
    path.write_bytes(_rewritten(data, _deflate(json.dumps(header).encode())))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        read_artifact(path)


def _with_empty(entries: dict) -> bytes:
    data = _sample().to_bytes()
    return _deflate(json.dumps({**_stored_header(data), "empty": json.dumps(entries)}).encode())


@pytest.mark.parametrize("stored, refusal", [
    (b"\x00" * 40, "truncated or corrupt"),
    (_deflate(b"{" * 30 + b"}" * 30), "truncated or corrupt"),
    (_deflate(b" " * (MAX_HEADER_BYTES + 1)), "inflates to more than"),
    (_deflate(json.dumps({"format": "big2small-artifact", "format_version": "2"}).encode()), "format differs"),
    (_deflate(json.dumps({"format": "big2small-artifact", "format_version": "4", "checksum": "0"}).encode()),
     "malformed stored header"),
    (_with_empty({"x": ["float32", [2, 3]]}), "empty tensor 'x'"),
    (_with_empty({"x": ["object", [0]]}), "empty tensor 'x'"),
    (_with_empty({"codes": ["uint8", [0]]}), "empty tensor 'codes'"),
    (_with_empty({"x": ["uint8", [0] * 9]}), "empty tensor 'x'"),
    (_with_empty({"x": ["uint8", [0, -1]]}), "empty tensor 'x'"),
])
def test_a_forged_stored_header_is_refused_before_it_is_read(tmp_path, stored, refusal):
    path = tmp_path / "a.safetensors"
    path.write_bytes(_rewritten(_sample().to_bytes(), stored))
    with pytest.raises(ArtifactError, match=refusal):
        read_artifact(path)


def test_a_file_without_its_stored_header_is_refused():
    data = _sample().to_bytes()
    tensors = {name: t for name, t in safetensors_load(data).items() if name != HEADER_TENSOR}
    with pytest.raises(ArtifactError, match="no stored header"):
        Compressed.from_bytes(safetensors_save(tensors, metadata={"big2small": json.dumps(_wrapper(data))}))


def test_a_later_format_version_is_named(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(_rewritten(_sample().to_bytes(), format_version="5"))
    with pytest.raises(ArtifactError, match="format version 5 is not supported"):
        read_artifact(path)


def test_foreign_file_and_missing_file(tmp_path):
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"\x00" * 20)
    with pytest.raises(ArtifactError):
        read_artifact(garbage)
    with pytest.raises(ArtifactError, match="not found"):
        read_artifact(tmp_path / "missing.safetensors")


def test_an_artifact_that_cannot_be_written_is_named_and_leaves_no_partial_file(tmp_path):
    from big2small.errors import OutputError

    full = tmp_path / "full"
    full.mkdir()
    compressed = Compressed("none", {}, {"w": torch.zeros(4)}, {"replaced": ["w"]})
    blocker = full / f"compressed.safetensors.{os.getpid()}.tmp"
    blocker.mkdir()  # the temporary name is taken by a folder: the write fails like a full disk would
    with pytest.raises(OutputError, match="cannot write the artifact .*compressed.safetensors"):
        write_artifact(compressed, full / "compressed.safetensors")
    assert not (full / "compressed.safetensors").exists()
