"""Artifacts written by earlier code (format version 1, the header stored as plain JSON) still load, and rebuild
the same model.

tests/fixtures/format_v1/ holds one artifact per compressor, fitted on the digits-sized CNN (seed 0) by the
code before the package layout changed, plus the logits of each rebuilt model on four fixed images.
"""

import pytest
import torch
from safetensors.torch import load_file

from big2small.codec import READ_VERSIONS, read_artifact
from big2small.methods.registry import available, rebuild
from tests.conftest import PROJECT_ROOT
from tests.methods.roundtrip import digits_sized_cnn, outputs

FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "format_v1"
IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_fixtures_cover_the_compressors_of_version_1():
    assert "1" in READ_VERSIONS
    names = {p.stem for p in FIXTURES.glob("*.safetensors")} - {"rebuilt_logits"}
    assert len(names) == 9 and names <= set(available())


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.safetensors") if p.stem != "rebuilt_logits"))
def test_version_1_artifact_rebuilds_the_same_model(name):
    compressed = read_artifact(FIXTURES / f"{name}.safetensors")
    assert compressed.compressor == name
    rebuilt = rebuild(compressed, digits_sized_cnn())
    expected = load_file(str(FIXTURES / "rebuilt_logits.safetensors"))[name]
    torch.testing.assert_close(outputs(rebuilt, IMAGES), expected)
