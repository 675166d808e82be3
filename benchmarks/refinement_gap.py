"""How well the data-free refinement's fit to its synthetic inputs carries over to real images.

For each Big2Small artifact (rebuilt with `big2small.load` from its file and the model's checkpoint alone) it prints
the refinement's own loss against the uncompressed model (the logits' and every compressed layer's output, each a
mean squared error over the batch's variance: matching.matching_loss with the default `match: layers` and
`feature_weight`) on two sets of inputs: the synthetic inputs the compressor makes for the run's seed (the
default `bn_stats` synthesis of `--num-inputs` inputs, `--input-steps` steps) and the first `--images` of the 10,000
CIFAR-10 training images of ../shared (never seen by the compressor). A loss much lower on the synthetic inputs than
on real ones is a refinement fitted to its inputs rather than to the network.

    OMP_NUM_THREADS=1 python benchmarks/refinement_gap.py --model resnet20 --seed 0 \\
        refined=outputs/a/compressed.safetensors unrefined=outputs/b/compressed.safetensors
"""

from __future__ import annotations

import argparse

import torch
from big2small_common import CIFAR_CHECKPOINTS, cifar_resnet, trainer_factory
from training_image_scores import training_images

from big2small.api import load
from big2small.methods.big2small.matching import batch_variances, input_sums, matching_loss, observing
from big2small.methods.big2small.seeds import input_seed
from big2small.methods.big2small.settings import RefinementSettings
from big2small.methods.big2small.synthesis import synthetic_inputs

BATCH = 32  # the refinement's default batch: the variances that scale each term are a batch's
FEATURE_WEIGHT = RefinementSettings().feature_weight  # the default weight of the layer outputs (coarse plans: x3)


def refinement_loss(student: torch.nn.Module, teacher: torch.nn.Module, layers: list[str],
                    inputs: torch.Tensor) -> float:
    """The refinement's loss of `student` against `teacher` on `inputs`, averaged over batches of BATCH."""
    losses = []
    with torch.no_grad():
        for batch in inputs.split(BATCH):
            with observing(teacher, layers) as wanted_features:
                wanted = teacher(batch)
            with observing(student, layers) as features:
                got = student(batch)
            wanted_all = [wanted, *wanted_features]
            variances = batch_variances(torch.stack([input_sums(t) for t in wanted_all]),
                                        [t[0].numel() for t in wanted_all])
            per_input = matching_loss(got, wanted, features, wanted_features, variances, FEATURE_WEIGHT)
            losses.append(float(per_input.mean()))
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(CIFAR_CHECKPOINTS), default="resnet20")
    parser.add_argument("--seed", type=int, default=0, help="the runs' seed: which synthetic inputs to make")
    parser.add_argument("--num-inputs", type=int, default=256)
    parser.add_argument("--input-steps", type=int, default=100)
    parser.add_argument("--images", type=int, default=1024, help="real training images to measure on")
    parser.add_argument("artifacts", nargs="+", help="NAME=PATH: an artifact to measure")
    args = parser.parse_args()
    named = [artifact.partition("=") for artifact in args.artifacts]
    if any(not path for _, _, path in named):
        parser.error("an artifact is given as NAME=PATH")
    teacher = cifar_resnet(args.model)
    layers = [name.rpartition(".")[0] for name, p in teacher.named_parameters() if p.dim() > 1]
    settings = RefinementSettings(num_inputs=args.num_inputs, input_steps=args.input_steps)
    synthetic = synthetic_inputs(cifar_resnet(args.model), [3, 32, 32], settings, input_seed(args.seed, 0),
                                 trainer_factory())
    real = training_images()[0][:args.images]
    print(f"{'artifact':>12} {'synthetic':>10} {'real':>10} {'real/synthetic':>15}")
    for name, _, path in named:
        student = load(path, cifar_resnet(args.model)).eval()
        on_synthetic = refinement_loss(student, teacher, layers, synthetic)
        on_real = refinement_loss(student, teacher, layers, real)
        print(f"{name:>12} {on_synthetic:10.4f} {on_real:10.4f} {on_real / on_synthetic:15.2f}", flush=True)


if __name__ == "__main__":
    main()
