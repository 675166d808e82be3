"""Artifact format: one file that holds everything needed to rebuild the compressed parameters.

The file is a safetensors file. Its tensors are the compressor's payload (packed codes, scales, INR
parameters, ...) and, under HEADER_TENSOR, our JSON header below deflated (zlib's raw DEFLATE, level 9, from the
preset dictionary of header_dictionary.py) as uint8 bytes: the header counts in every artifact's bytes and is
mostly the same names and settings in every artifact, so it is stored compressed against them
(docs/decisions.md). Payload tensors with no elements are not written; the header lists each one's dtype and
shape (`empty`), and reading gives them back. The file's string metadata holds one entry, `big2small` (one entry, because
safetensors writes metadata entries in hash order; a single canonical string keeps files byte-identical across
runs), whose value is the JSON `{"format", "format_version", "checksum", "hmac"}`. The checksum lives there, outside
the deflated header, so a file's size depends on its tensors' shapes alone and never on their values: sizing a
payload of zeros gives the written size to the byte. Format version 1 stored the header as plain JSON in that entry,
version 2 deflated in base85 with the checksum inside, version 3 as now but deflated without a dictionary; all are
still read.

    format          "big2small-artifact"
    format_version  FORMAT_VERSION
    compressor      registry name of the compressor that wrote it
    config          the compressor's settings (JSON)
    meta            whatever the compressor needs to decode besides tensors (JSON: shapes, layer names, ...)
    empty           (when any) {name: [dtype, shape]} of the payload tensors with no elements
    architecture    (optional) how to build the model again: a builder of big2small.models and its arguments
    checksum        (in the metadata entry) sha256 over the other header fields and every tensor's name, dtype,
                    shape and bytes, the empty ones included
    hmac            (in the metadata entry, optional) HMAC-SHA256 of the checksum under a key the writer and the
                    reader share

Optionally the file also carries the model state the compressor left alone (BatchNorm, biases, skipped layers),
each tensor in its own dtype under the name `uncompressed/<state_dict key>`; then the artifact and the
architecture alone give the whole model, and with the `architecture` header field the artifact alone does.

The checksum shows damage, not forgery: anyone can edit a file and recompute it. A file written with a key
carries an HMAC that only holders of the key can make; reading with the key refuses files without a matching
one. safetensors never executes code on load, so reading an artifact is safe whatever its origin. The file size on
disk without the stored rest of the model (its state and architecture) is the `compressed_bytes` every run
reports: nothing that the rebuild of the compressed parameters needs lives anywhere else.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import itertools
import json
import math
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from big2small.errors import ArtifactError
from big2small.files import write_atomically
from big2small.header_dictionary import HEADER_DICTIONARY

FORMAT_NAME = "big2small-artifact"
FORMAT_VERSION = 4
READ_VERSIONS = ("1", "2", "3", "4")
# The preset dictionary each version's stored header is deflated from (version 2 keeps it in base85, 1 plain).
HEADER_DICTIONARIES = {"2": b"", "3": b"", "4": HEADER_DICTIONARY}
HEADER_KEY = "big2small"
HEADER_TENSOR = "big2small/header"
# The most bytes a stored header may inflate to: a forged one is refused before it can take more memory.
MAX_HEADER_BYTES = 16 << 20
# Deeper JSON than any artifact of ours holds is refused before it is parsed (a deeply nested header would
# otherwise exhaust the parser's recursion before the checksum is even looked at).
MAX_JSON_DEPTH = 16
UNCOMPRESSED_PREFIX = "uncompressed/"
# The most dimensions an empty tensor listed in the header may have.
MAX_EMPTY_DIMS = 8
# The dtypes an empty tensor may be listed with, by the name the header gives them.
_DTYPES = {str(dtype).removeprefix("torch."): dtype for dtype in (
    torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    torch.float16, torch.bfloat16, torch.float32, torch.float64)}
_DTYPE_NAMES = {dtype: name for name, dtype in _DTYPES.items()}
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


@dataclass
class Compressed:
    """What a compressor produces: named tensors plus JSON-able metadata.

    Decoding is the registry's job (`big2small.methods.registry.rebuild`): it hands this object to the compressor
    class named in it, so decoding never depends on run configuration and this module imports no compressor.
    """

    compressor: str
    config: dict
    tensors: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    # Per-layer diagnostics from fitting (outliers, INR bytes, ...) for the results table; not stored.
    layer_stats: dict[str, dict] = field(default_factory=dict, compare=False)
    # Wall seconds of each phase of fitting, in order (e.g. Big2Small's allocation, weight fitting, input
    # synthesis, refinement); not stored.
    phase_seconds: dict[str, float] = field(default_factory=dict, compare=False)
    # The model's other state_dict entries, stored as they are when present (empty: the rebuild takes them from
    # the model it is given).
    uncompressed: dict[str, torch.Tensor] = field(default_factory=dict)
    # How to build the model's architecture (models/recipe.py), stored with the rest of the model; None: not known.
    architecture: dict | None = None

    def compressed_bytes(self, key: bytes | None = None) -> int:
        """The artifact's size without the stored rest of the model: what the compressor itself produced."""
        return len(self.without_rest().to_bytes(key))

    def without_rest(self) -> Compressed:
        """A copy without the model state the compressor left alone and without the architecture."""
        return dataclasses.replace(self, uncompressed={}, architecture=None)

    def to_bytes(self, key: bytes | None = None) -> bytes:
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.tensors.items()}
        if any(name.startswith(UNCOMPRESSED_PREFIX) or name == HEADER_TENSOR for name in tensors):
            raise ValueError(f"{self.compressor}: tensor names must not start with {UNCOMPRESSED_PREFIX!r} "
                             f"nor be {HEADER_TENSOR!r}")
        tensors.update({UNCOMPRESSED_PREFIX + name: t.detach().cpu().contiguous()
                        for name, t in self.uncompressed.items()})
        header = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            "compressor": self.compressor,
            "config": _canonical_json(self.config),
            "meta": _canonical_json(self.meta),
        }
        empty = {name: [_DTYPE_NAMES[t.dtype], list(t.shape)] for name, t in tensors.items() if not t.numel()}
        if empty:
            header["empty"] = _canonical_json(empty)
        if self.architecture is not None:
            header["architecture"] = _canonical_json(self.architecture)
        wrapper = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
                   "checksum": _checksum(header, tensors)}
        if key is not None:
            wrapper["hmac"] = _hmac(key, wrapper["checksum"])
        stored = {name: t for name, t in tensors.items() if t.numel()}
        stored[HEADER_TENSOR] = torch.frombuffer(
            bytearray(_deflate(_canonical_json(header).encode(), HEADER_DICTIONARIES[str(FORMAT_VERSION)])),
            dtype=torch.uint8)
        return safetensors_save(stored, metadata={HEADER_KEY: _canonical_json(wrapper)})

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "artifact", key: bytes | None = None) -> Compressed:
        try:
            tensors = safetensors_load(data)
            header = _read_header(data, tensors)
        except (SafetensorError, ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError,
                zlib.error) as error:
            raise ArtifactError(f"{source}: not a readable artifact (truncated or corrupt): {error}") from None
        if header.get("format") != FORMAT_NAME:
            raise ArtifactError(f"{source}: not a {FORMAT_NAME} file (format={header.get('format')!r})")
        if header.get("format_version") not in READ_VERSIONS:
            raise ArtifactError(
                f"{source}: format version {header.get('format_version')} is not supported "
                f"(this version reads {' and '.join(READ_VERSIONS)})"
            )
        stored, signature = header.pop("checksum", None), header.pop("hmac", None)
        if stored != _checksum(header, tensors):
            raise ArtifactError(f"{source}: checksum mismatch, the artifact was altered or damaged")
        if key is not None and (not isinstance(signature, str)
                                or not hmac.compare_digest(signature, _hmac(key, stored))):
            raise ArtifactError(f"{source}: not signed with the given key (missing or wrong HMAC); do not trust it")
        uncompressed = {name.removeprefix(UNCOMPRESSED_PREFIX): tensors.pop(name)
                        for name in [n for n in tensors if n.startswith(UNCOMPRESSED_PREFIX)]}
        fields = {key: header.get(key) for key in ("compressor", "config", "meta")}
        if not all(isinstance(value, str) for value in fields.values()):
            raise ArtifactError(f"{source}: its header lacks the compressor, config or meta field")
        try:
            config, meta = _parse_json(fields["config"]), _parse_json(fields["meta"])
        except ValueError as error:
            raise ArtifactError(f"{source}: its header's config or meta is not valid JSON: {error}") from None
        if not isinstance(config, dict) or not isinstance(meta, dict):
            raise ArtifactError(f"{source}: its header's config and meta must be JSON objects")
        return cls(compressor=fields["compressor"], config=config, tensors=tensors, meta=meta,
                   uncompressed=uncompressed, architecture=_architecture(header.get("architecture"), source))


def write_artifact(compressed: Compressed, path: str | os.PathLike, key: bytes | None = None) -> int:
    """Write the artifact (signed when a key is given) and return its size on disk in bytes."""
    return write_atomically(path, compressed.to_bytes(key), "the artifact").stat().st_size


def read_artifact(path: str | os.PathLike, key: bytes | None = None) -> Compressed:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact not found: {path}")
    return Compressed.from_bytes(path.read_bytes(), source=str(path), key=key)


def _architecture(text, source: str) -> dict | None:
    if text is None:
        return None
    try:
        architecture = _parse_json(text) if isinstance(text, str) else None
    except ValueError:
        architecture = None
    if not isinstance(architecture, dict):
        raise ArtifactError(f"{source}: its header's architecture is not a JSON object")
    return architecture


def first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor (by name) holding NaN or inf; None when every value is finite."""
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def _read_header(data: bytes, tensors: dict[str, torch.Tensor]) -> dict:
    """The file's header fields, checksum and hmac among them; from version 3 on `tensors` loses the stored header
    and gets back the empty tensors it lists."""
    # safetensors layout: 8-byte little-endian header length, then the JSON header.
    length = int.from_bytes(data[:8], "little")
    header = _parse_json(data[8 : 8 + length].decode("utf-8"))
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or HEADER_KEY not in metadata:
        raise ValueError("no big2small header")
    fields = _parse_json(metadata[HEADER_KEY])
    if not isinstance(fields, dict):
        raise ValueError("malformed big2small header")
    version = fields.get("format_version")
    if fields.get("format") != FORMAT_NAME or not isinstance(version, str) or version not in HEADER_DICTIONARIES:
        return fields  # a foreign header, or a version that stores it plain (1) or is not read
    if version == "2":
        packed = fields.get("header")
        if not isinstance(packed, str):
            raise ValueError("no stored header")
        stored = _parse_json(_inflate(base64.b85decode(packed)).decode("utf-8"))
    else:
        packed = tensors.pop(HEADER_TENSOR, None)
        if packed is None or packed.dtype != torch.uint8 or packed.dim() != 1:
            raise ValueError(f"no stored header (a 1-D uint8 tensor {HEADER_TENSOR!r})")
        stored = _parse_json(_inflate(packed.numpy().tobytes(), HEADER_DICTIONARIES[version]).decode("utf-8"))
        if not isinstance(stored, dict) or {"checksum", "hmac"} & set(stored):
            raise ValueError("malformed stored header")
        stored.update({key: fields[key] for key in ("checksum", "hmac") if key in fields})
        if "empty" in stored:
            tensors.update(_empty_tensors(stored["empty"], tensors))
    if not isinstance(stored, dict) or any(stored.get(key) != fields.get(key) for key in ("format", "format_version")):
        raise ValueError("the stored header's format differs from the file's")
    return stored


def _empty_tensors(text, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The empty tensors a header of version 3 on lists (`empty`), ValueError for any entry that is not a known
    dtype and a shape with no elements, or that names a tensor the file holds."""
    listed = _parse_json(text) if isinstance(text, str) else None
    if not isinstance(listed, dict):
        raise ValueError("the header's empty tensors are not a JSON object")
    empty = {}
    for name, entry in listed.items():
        dtype, shape = entry if isinstance(entry, list) and len(entry) == 2 else (None, None)
        if (dtype not in _DTYPES or not isinstance(shape, list) or len(shape) > MAX_EMPTY_DIMS
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
                or math.prod(shape) or name in stored):
            raise ValueError(f"the header's empty tensor {name!r} is not a dtype and a shape with no elements")
        empty[name] = torch.zeros(shape, dtype=_DTYPES[dtype])
    return empty


def _deflate(data: bytes, dictionary: bytes = b"") -> bytes:
    """Raw DEFLATE of `data`, starting from the preset `dictionary` (b"": none)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=dictionary)
    return packer.compress(data) + packer.flush()


def _inflate(data: bytes, dictionary: bytes = b"") -> bytes:
    """Raw DEFLATE data (from the preset `dictionary`; b"": none) inflated, refused (ValueError) beyond
    MAX_HEADER_BYTES or where the stream does not end."""
    unpacker = zlib.decompressobj(-15, zdict=dictionary)
    inflated = unpacker.decompress(data, MAX_HEADER_BYTES)
    if not unpacker.eof and len(inflated) >= MAX_HEADER_BYTES:
        raise ValueError(f"the stored header inflates to more than {MAX_HEADER_BYTES} bytes")
    if not unpacker.eof or unpacker.unused_data:
        raise ValueError("the stored header's stream is cut short or followed by other bytes")
    return inflated


def _parse_json(text: str):
    """json.loads with a nesting limit checked on the text first (ValueError for anything deeper), and no NaN or
    Infinity."""
    # Brackets inside strings do not nest. Regular expressions drop the strings and find the brackets, so the loop
    # in Python runs over the brackets alone, not over every character (a header is parsed on every load).
    steps = [1 if bracket in "[{" else -1 for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text))]
    if steps and max(itertools.accumulate(steps)) > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str):
    # NaN and Infinity are not JSON; Python's json would read them, and a forged header value would carry them on.
    raise ValueError(f"the JSON constant {name} is not a number an artifact holds")


def _canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _hmac(key: bytes, checksum: str) -> str:
    return hmac.new(key, checksum.encode(), hashlib.sha256).hexdigest()


def _checksum(header: dict, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(k for k in header if k not in ("checksum", "hmac")):
        digest.update(f"{key}={header[key]}\n".encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()

