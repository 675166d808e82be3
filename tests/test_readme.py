"""The README's Python example runs as written (only the artifact path and the model builder are supplied)."""

import copy
import re

import torch

from big2small.codec import write_artifact
from big2small.methods.quant import UniformQuantizer
from tests.conftest import PROJECT_ROOT, tiny_cnn

README_PATH = "outputs/runs/<time>/compressed.safetensors"


def _python_block(section: str) -> str:
    text = (PROJECT_ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_use_a_compressed_model_example(tmp_path):
    base = tiny_cnn()
    artifact = tmp_path / "compressed.safetensors"
    write_artifact(UniformQuantizer(bits=4).fit(base), artifact)
    code = _python_block("Use a compressed model")
    assert README_PATH in code
    namespace = {"build_the_same_architecture": lambda: copy.deepcopy(base)}
    exec(code.replace(README_PATH, str(artifact)), namespace)
    rebuilt = namespace["rebuilt"]
    images = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    weight = rebuilt.get_parameter(next(n for n, _ in base.named_parameters() if n.endswith("weight")))
    assert not torch.equal(weight, next(p for n, p in base.named_parameters() if n.endswith("weight")))
    assert torch.isfinite(rebuilt(images)).all()
