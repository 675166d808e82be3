"""Bytes per stored value of the dtypes the project counts with."""

FP32_BYTES = 4
FP16_BYTES = 2


def fp32_bytes(count: int) -> int:
    """What `count` parameters take uncompressed (fp32): the reference every compression ratio divides."""
    return FP32_BYTES * int(count)
