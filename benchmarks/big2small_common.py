"""Shared set-up of the Big2Small benchmarks: ResNet-20 from ../shared, CIFAR-10 images, top-1, a fit harness.

Data-free: the compressor never sees an image. Images are only used to *measure* top-1: 2,000 test images (the
first 200 of each class: test.npz is sorted by class) for the reported figures, and 1,000 held-out training
images (train_10k.npz, seeded) for any choice.
"""

from __future__ import annotations

import copy
import resource
import sys
import time
from pathlib import Path

import lightning as L
import torch

from big2small.codec import Compressed
from big2small.data.cifar10 import Cifar10DataModule
from big2small.logs import quiet_library_logs
from big2small.methods.big2small.compressor import Big2SmallCompressor
from big2small.methods.registry import rebuild
from big2small.rebuilding import layer_table

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CHECKPOINT = SHARED / "models/cifar10/resnet20-12fca82f.th"
TEST_IMAGES = 2000


def resnet20() -> torch.nn.Module:
    from big2small.checkpoints import load_checkpoint
    from big2small.models.cifar_resnet import CifarResNet

    return load_checkpoint(CifarResNet(depth=20), CHECKPOINT, trusted_pickle=True).eval()


CIFAR_CHECKPOINTS = {"resnet20": (20, "resnet20-12fca82f.th"), "resnet32": (32, "resnet32-d509ac18.th")}


def cifar_resnet(name: str) -> torch.nn.Module:
    """A pretrained CIFAR-10 ResNet from ../shared by name (CIFAR_CHECKPOINTS)."""
    from big2small.checkpoints import load_checkpoint
    from big2small.models.cifar_resnet import CifarResNet

    depth, file = CIFAR_CHECKPOINTS[name]
    return load_checkpoint(CifarResNet(depth=depth), SHARED / "models/cifar10" / file, trusted_pickle=True).eval()


def cifar10() -> Cifar10DataModule:
    """The shared CIFAR-10 files: training images less 1,000 held out, and the test split."""
    data = Cifar10DataModule(root=str(SHARED / "data/cifar10"), heldout_size=1000, augment=False)
    data.setup("fit")
    return data


def image_sets() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    data = cifar10()
    test_x, test_y = data.splits["test"].tensors
    held_x, held_y = data.splits["heldout"].tensors
    per_class = TEST_IMAGES // 10
    chosen = torch.cat([(test_y == c).nonzero().reshape(-1)[:per_class] for c in range(10)])
    return {"test": (test_x[chosen], test_y[chosen]), "heldout": (held_x, held_y)}


def top1(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.inference_mode():
        predictions = torch.cat([model(chunk).argmax(1) for chunk in images.split(500)])
    return float((predictions == labels).float().mean())


def trainer_factory(root: str = "outputs/benchmarks/big2small"):
    def make(**overrides):
        settings = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, deterministic=True, default_root_dir=root)
        settings.update(overrides)
        return L.Trainer(**settings)
    return make


def mean_relative_error(model: torch.nn.Module, result: dict) -> float:
    """Mean over the replaced weights of ||W_rebuilt - W|| / ||W|| (the pipeline's per-layer table)."""
    rows = layer_table(model, result["rebuilt"], result["compressed"].meta["replaced"])
    return sum(row["relative_error"] for row in rows) / len(rows)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_and_rebuild(model: torch.nn.Module, data=None, **settings) -> dict:
    """Fit, serialise, decode; returns timings, sizes and the rebuilt model. `data` is offered to the
    compressor when its settings make it use data (refinement on real images)."""
    compressor = Big2SmallCompressor(**settings)
    started = time.perf_counter()
    compressed = compressor.fit(copy.deepcopy(model), data=data if compressor.uses_data else None,
                                trainer_factory=trainer_factory())
    fit_seconds = time.perf_counter() - started
    data = compressed.to_bytes()
    started = time.perf_counter()
    rebuilt = rebuild(Compressed.from_bytes(data), copy.deepcopy(model))
    decode_seconds = time.perf_counter() - started
    original = 4 * sum(model.get_parameter(n).numel() for n in compressed.meta["replaced"])
    return {"ratio": original / len(data), "bytes": len(data), "fit_seconds": fit_seconds,
            "decode_seconds": decode_seconds, "rebuilt": rebuilt, "compressed": compressed}


def harness(parser) -> tuple:
    """Adds --seed and --model to `parser`, parses it, sets up, and prints the chosen ResNet's uncompressed top-1;
    returns (args, model, image sets)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="resnet20", choices=sorted(CIFAR_CHECKPOINTS))
    args = parser.parse_args()
    setup()
    model = cifar_resnet(args.model)
    images = image_sets()
    print(f"{args.model}: held-out top-1 {top1(model, *images['heldout']):.4f}, test top-1 "
          f"{top1(model, *images['test']):.4f} uncompressed; seed {args.seed}\n")
    return args, model, images


def setup() -> None:
    if not CHECKPOINT.is_file():
        sys.exit(f"needs {CHECKPOINT} (the shared ResNet-20 checkpoint)")
    quiet_library_logs()
    torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "1")))
