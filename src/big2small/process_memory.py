"""How the process's C allocator hands memory back: kept for reuse across training steps.

PyTorch allocates CPU tensors with the C allocator and has no cache of its own there. glibc's malloc serves a
block over its mmap threshold with fresh pages from the kernel and gives them back on free, and trims the heap's
free top beyond its trim threshold; both start low (128 KB) and only the first rises on its own. A training step
that frees and makes the same activations again then faults in and zeroes every page of them anew: a pass of
ResNet-20 to 128 CIFAR images took about a sixth more time so. `keep_freed_memory` raises the mmap threshold to
glibc's largest (32 MB) and the trim threshold to KEPT_FREE_BYTES, so steps reuse their pages; blocks over 32 MB
are still handed back at once (benchmarks/allocator_speed.py measures both ways).
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on a 64-bit machine.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20
# Free memory at the heap's top that the process keeps rather than hands back.
KEPT_FREE_BYTES = 256 << 20


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (module docstring); False where the C library is not glibc
    (macOS, musl, Windows), which is left as it is."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # present only in glibc, whose parameters these are  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
