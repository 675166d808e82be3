"""Evaluation speed of a CIFAR ResNet on the CIFAR-10 test split: images per second, plain vs channels-last.

    python benchmarks/eval_speed.py --root ../shared/data/cifar10 \
        --checkpoint ../shared/models/cifar10/resnet20-12fca82f.th

Prints one line per variant: a plain loop (NCHW, torch.no_grad), the same loop in channels-last memory format
under torch.inference_mode, and the pipeline's own path (ClassificationTask.evaluate through Lightning).
Each variant runs `--repeats` times after one warm-up batch; the best repeat is reported (CPU timings on a
shared machine are noisy, and the best one is the least disturbed).
"""

from __future__ import annotations

import argparse
import time

import torch

from big2small.checkpoints import load_checkpoint
from big2small.data.cifar10 import Cifar10DataModule
from big2small.models.cifar_resnet import CifarResNet


def loop_accuracy(model, images, labels, batch_size: int, channels_last: bool) -> tuple[float, float]:
    """(seconds, top-1) for one pass over `images` in batches."""
    context = torch.inference_mode if channels_last else torch.no_grad
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    correct = 0
    with context():
        model(images[:batch_size].to(memory_format=memory_format))  # warm-up: oneDNN picks its kernels here
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(memory_format=memory_format)
            correct += int((model(batch).argmax(1) == labels[start : start + batch_size]).sum())
        seconds = time.perf_counter() - started
    return seconds, correct / len(images)


def pipeline_accuracy(model, data) -> tuple[float, float]:
    import lightning as L

    from big2small.tasks.classification import ClassificationTask

    def make_trainer(**overrides):
        return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, **overrides)

    started = time.perf_counter()
    metrics = ClassificationTask().evaluate(model, data, make_trainer)
    return time.perf_counter() - started, metrics["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="../shared/data/cifar10")
    parser.add_argument("--checkpoint", default="../shared/models/cifar10/resnet20-12fca82f.th")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = Cifar10DataModule(root=args.root, eval_batch_size=args.batch_size)
    data.setup()
    images, labels = data.splits["test"].tensors
    model = load_checkpoint(CifarResNet(args.depth), args.checkpoint).eval()
    print(f"ResNet-{args.depth}, {len(images)} test images, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")

    variants = {
        "plain (NCHW, no_grad)": lambda: loop_accuracy(model, images, labels, args.batch_size, channels_last=False),
        "channels-last + inference_mode": lambda: loop_accuracy(
            model, images, labels, args.batch_size, channels_last=True),
        "pipeline (Task.evaluate)": lambda: pipeline_accuracy(model, data),
    }
    for name, measure in variants.items():
        runs = [measure() for _ in range(args.repeats)]
        seconds, accuracy = min(runs)
        print(f"{name:32s} {len(images) / seconds:8.0f} images/s  ({seconds:.2f} s, top-1 {accuracy:.4f})")


if __name__ == "__main__":
    main()
