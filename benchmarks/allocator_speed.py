"""What keeping freed memory (big2small.process_memory.keep_freed_memory) is worth on a training step, on this CPU.

    OMP_NUM_THREADS=2 python benchmarks/allocator_speed.py [--reps 3] [--steps 20] [--images 128]

Each rep runs, in two fresh processes one after the other, the step of the Big2Small synthesis on CIFAR ResNet-20
(seeded random weights, frozen; a forward and backward pass to `--images` inputs), once with glibc's malloc as it
starts and once after `keep_freed_memory()`, and prints each one's median milliseconds per step, minor page faults
per step and system seconds; then the means over the reps. Alternating the two within a rep keeps a shared
machine's drift out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

STEP = r"""
import json, resource, statistics, sys, time
import torch
from big2small.models.cifar_resnet import CifarResNet
from big2small.process_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
steps, images = int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = CifarResNet(20).eval()
for p in model.parameters():
    p.requires_grad_(False)
x = torch.randn(images, 3, 32, 32, requires_grad=True)
def step():
    model(x).square().mean().backward()
for _ in range(3):
    step()
before, times = resource.getrusage(resource.RUSAGE_SELF), []
for _ in range(steps):
    started = time.perf_counter()
    step()
    times.append(time.perf_counter() - started)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "ms": 1000 * statistics.median(times),
                  "faults": (after.ru_minflt - before.ru_minflt) / steps, "system_s": after.ru_stime - before.ru_stime}))
"""

WAYS = ("as_started", "kept")


def run(way: str, steps: int, images: int) -> dict:
    out = subprocess.run([sys.executable, "-c", STEP, way, str(steps), str(images)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=128)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {way: [] for way in WAYS}
    for rep in range(args.reps):
        for way in WAYS:
            row = run(way, args.steps, args.images)
            results[way].append(row)
            print(f"rep {rep} {way:>10}: {row['ms']:.1f} ms/step, {row['faults']:.0f} minor faults/step, "
                  f"system {row['system_s']:.2f} s (allocator set: {row['kept']})", flush=True)
    for way, rows in results.items():
        print(f"mean {way:>10}: {statistics.mean(r['ms'] for r in rows):.1f} ms/step, "
              f"{statistics.mean(r['faults'] for r in rows):.0f} minor faults/step")


if __name__ == "__main__":
    main()
