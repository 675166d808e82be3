"""Reading an offline W&B run's records back (the run-<id>.wandb file), for tests of what a run logged.

The file is a ':W&B' header (7 bytes) and a log of protobuf `Record`s in 32 KiB blocks; each chunk has a 7-byte
header (crc32, little-endian length, kind: 1 full, 2 first, 3 middle, 4 last) and a block's tail shorter than a
chunk header is padding.
"""

from pathlib import Path

from wandb.proto import wandb_internal_pb2

MAGIC = b":W&B"
FILE_HEADER_BYTES = 7
BLOCK_BYTES = 32768
CHUNK_HEADER_BYTES = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    raw = Path(path).read_bytes()
    assert raw[:4] == MAGIC, f"{path} is not a W&B run log"
    position, pending = FILE_HEADER_BYTES, b""
    while position + CHUNK_HEADER_BYTES <= len(raw):
        left_in_block = BLOCK_BYTES - position % BLOCK_BYTES
        if left_in_block < CHUNK_HEADER_BYTES:
            position += left_in_block
            continue
        length = int.from_bytes(raw[position + 4 : position + 6], "little")
        kind = raw[position + 6]
        data = raw[position + CHUNK_HEADER_BYTES : position + CHUNK_HEADER_BYTES + length]
        position += CHUNK_HEADER_BYTES + length
        if kind == 0:
            return
        pending = data if kind in (FULL, FIRST) else pending + data
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def logged_artifacts(run_dir: Path) -> list:
    """The artifact records of the offline run under run_dir/wandb."""
    (log,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    return [r.artifact for r in records(log) if r.WhichOneof("record_type") == "artifact"]
