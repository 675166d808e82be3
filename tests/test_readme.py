"""The README's Python example runs as written (only `model` and `build_model` are supplied)."""

import os
import re

import torch

from big2small.models.small_cnn import SmallCNN
from tests.conftest import PROJECT_ROOT, tiny_cnn


def _python_block(section: str) -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_use_a_compressed_model_example(tmp_path):
    model = tiny_cnn(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def build_model():  # another instance of the architecture, with other weights
        torch.manual_seed(123)
        return SmallCNN(in_channels=1, num_classes=10, channels=(8, 16, 32))

    namespace = {"model": model, "build_model": build_model}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(_python_block("Use a compressed model"), namespace)
    finally:
        os.chdir(cwd)
    rebuilt, size = namespace["rebuilt"], namespace["size"]
    assert size == (tmp_path / "model-8x.safetensors").stat().st_size
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "compress must not change model"
    images = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got, original = rebuilt.eval()(images), model.eval()(images)
    # Quantised at ~8x: close to the original model, although build_model() started from other weights.
    assert torch.nn.functional.cosine_similarity(got.flatten(), original.flatten(), dim=0) > 0.99
    for name, value in model.state_dict().items():
        if not name.endswith("weight") or value.dim() < 2:
            assert torch.equal(rebuilt.state_dict()[name], value), f"{name} must come from the artifact unchanged"
