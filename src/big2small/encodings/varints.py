"""Unsigned integers as LEB128 varints: seven bits per byte, the high bit set on every byte but the last."""

from __future__ import annotations

PAYLOAD_BITS = 7
PAYLOAD_MASK = 0x7F
CONTINUES = 0x80
MAX_VARINT_BYTES = 9  # 63 bits: no count or index of ours is larger; longer varints are refused


def write_varint(value: int, out: bytearray) -> None:
    if value < 0:
        raise ValueError(f"varints hold non-negative integers, got {value}")
    while True:
        byte = value & PAYLOAD_MASK
        value >>= PAYLOAD_BITS
        out.append(byte | (CONTINUES if value else 0))
        if not value:
            return


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """(value, position after it) of the varint starting at `at`; ValueError when it is cut off or too long."""
    value = shift = 0
    for length in range(MAX_VARINT_BYTES):
        if at + length >= len(data):
            raise ValueError("a varint runs past the end of its bytes")
        byte = data[at + length]
        value |= (byte & PAYLOAD_MASK) << shift
        shift += PAYLOAD_BITS
        if not byte & CONTINUES:
            return value, at + length + 1
    raise ValueError(f"a varint longer than {MAX_VARINT_BYTES} bytes")
