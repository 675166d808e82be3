"""How the process's C allocator hands memory back: kept for reuse across training steps.

PyTorch allocates CPU tensors with the C allocator and has no cache of its own there. glibc's malloc serves a
block over its mmap threshold with fresh pages from the kernel and gives them back on free, and trims the heap's
free top beyond its trim threshold; both start low (128 KB) and only the first rises on its own. A training step
that frees and makes the same activations again then faults in and zeroes every page of them anew: a pass of
ResNet-20 to 128 CIFAR images took about a sixth more time so. `keep_freed_memory` raises the mmap threshold to
glibc's largest (32 MB) and the trim threshold to KEPT_FREE_BYTES, so steps reuse their pages; blocks over 32 MB
are still handed back at once (benchmarks/allocator_speed.py measures both ways).

Between phases the opposite holds. Lightning's trainers and modules refer to each other in cycles, so what a fit's
module held (a teacher's cached outputs, copies of the model, synthetic inputs) stays allocated until Python's
cyclic collector runs, which its thresholds can put off past the next phase's allocations: on torchvision
ResNet-50 a gigabyte of such tensors outlived the fit into the rebuild and evaluation. `release_garbage` collects
them and hands the pages freed that way back to the kernel (glibc's malloc_trim), so the next phase starts from
the memory that is live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on a 64-bit machine.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20
# Free memory at the heap's top that the process keeps rather than hands back.
KEPT_FREE_BYTES = 256 << 20


def _glibc():
    """The C library, where it is glibc (whose allocator these functions set); None elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # present only in glibc  # noqa: B018
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse (module docstring); False where the C library is not glibc
    (macOS, musl, Windows), which is left as it is."""
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES))


def release_garbage() -> None:
    """Free what only reference cycles still hold, and hand free pages back to the kernel where the C library is
    glibc (module docstring); call it where a phase's objects are done with."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        libc.malloc_trim(0)
