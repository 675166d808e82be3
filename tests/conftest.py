"""Shared test fixtures. Tests may read ../shared (CI has it); tests that need it skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"


# `make test` runs the suite in two worker processes (pytest-xdist) on a 2-core machine: each worker, and every
# command it starts, computes on one thread so that the two do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(autouse=True, scope="session")
def _wandb_files_stay_in_the_test_tree(tmp_path_factory):
    """Offline W&B runs stage logged artifacts under WANDB_DATA_DIR (default: the user's home); subprocesses
    inherit it."""
    previous = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = str(tmp_path_factory.mktemp("wandb-data"))
    yield
    if previous is None:
        os.environ.pop("WANDB_DATA_DIR", None)
    else:
        os.environ["WANDB_DATA_DIR"] = previous


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def tiny_cnn(seed: int = 0) -> torch.nn.Module:
    """A small conv net with BN, a bias and a linear head: enough structure for every compressor."""
    from big2small.models.small_cnn import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=10, channels=(8, 16, 32))
    return model.eval()


def compose_config(overrides: list[str]):
    """The run config exactly as `python src/train.py <overrides>` composes it (hydra node excluded)."""
    from hydra import compose, initialize_config_dir

    from big2small.config_store import register_compressor_defaults

    register_compressor_defaults()
    with initialize_config_dir(str(PROJECT_ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA device: without one they are skipped, saying so."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
