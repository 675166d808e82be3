import os

import pytest
import torch

from big2small.codec import Compressed, read_artifact, write_artifact
from big2small.errors import ArtifactError


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


def test_altered_header_fails_checksum(tmp_path):
    path = tmp_path / "a.safetensors"
    write_artifact(_sample(), path)
    data = path.read_bytes().replace(b'\\"compressor\\":\\"quant\\"', b'\\"compressor\\":\\"quanx\\"')
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match="checksum mismatch"):
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
