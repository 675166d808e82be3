"""The CLI's process keeps freed memory for reuse: a step that frees and makes the same tensors again stops
faulting fresh pages in from the kernel; and between phases it frees what reference cycles held and hands those
pages back (big2small.process_memory)."""

from __future__ import annotations

import ctypes.util
import gc
import json
import platform
import subprocess
import sys
import weakref

import pytest
import torch

from big2small.process_memory import keep_freed_memory, release_garbage

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A frozen CIFAR ResNet-20's forward and backward pass to 64 inputs, as the synthesis steps it; prints the minor page
# faults per step after a warm-up.
STEPS = r"""
import json, resource, sys
import torch
from big2small.models.cifar_resnet import CifarResNet
from big2small.process_memory import keep_freed_memory
STEPS_MEASURED = 20
if sys.argv[1] == "kept":
    keep_freed_memory()
torch.manual_seed(0)
model = CifarResNet(20).eval().requires_grad_(False)
x = torch.randn(64, 3, 32, 32, requires_grad=True)
for _ in range(2):
    model(x).square().mean().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(STEPS_MEASURED):
    model(x).square().mean().backward()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / STEPS_MEASURED))
"""


def faults_per_step(way: str) -> float:
    out = subprocess.run([sys.executable, "-c", STEPS, way], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="the allocator's settings are glibc's")
def test_glibc_takes_the_settings():
    assert keep_freed_memory()


@pytest.mark.skipif(not GLIBC, reason="the allocator's settings are glibc's")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    as_started, kept = faults_per_step("as_started"), faults_per_step("kept")
    assert kept < as_started / 10


def test_elsewhere_it_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "no-such-c-library.so")
    assert keep_freed_memory() is False


# Tensors of 1 MB each (heap blocks, under the kept mmap threshold), 400 MB in all, held only by a reference cycle
# and dropped; prints the resident MB with the cycle dropped, then after release_garbage.
CYCLE = r"""
import gc, json
import torch
from big2small.process_memory import keep_freed_memory, release_garbage
def resident_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
keep_freed_memory()
gc.disable()  # as when the collector's thresholds have not been reached yet
holder = {"tensors": [torch.ones(1 << 18) for _ in range(400)]}
holder["self"] = holder
del holder
dropped = resident_mb()
release_garbage()
print(json.dumps([dropped, resident_mb()]))
"""


def test_release_garbage_frees_what_only_a_cycle_holds():
    gc.disable()
    try:
        holder = {"tensor": torch.ones(1000)}
        holder["self"] = holder
        tensor = weakref.ref(holder["tensor"])
        del holder
        assert tensor() is not None
        release_garbage()
        assert tensor() is None
    finally:
        gc.enable()


@pytest.mark.skipif(not GLIBC, reason="handing pages back is glibc's malloc_trim")
def test_release_garbage_hands_the_freed_pages_back():
    out = subprocess.run([sys.executable, "-c", CYCLE], check=True, capture_output=True, text=True).stdout
    dropped, released = json.loads(out.splitlines()[-1])
    assert dropped - released > 300
