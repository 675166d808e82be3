import pytest
import torch
from safetensors.torch import save_file

from big2small.checkpoints import load_checkpoint
from big2small.errors import ConfigError
from tests.conftest import tiny_cnn


class NotATensor:
    """A pickled object: loading it would run code, so the safe loader must refuse it."""


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(ConfigError, match="file not found: .*nope.pt"):
        load_checkpoint(tiny_cnn(), tmp_path / "nope.pt")


def test_wrapped_and_prefixed_state_dict_loads(tmp_path):
    source = tiny_cnn(seed=3)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "best_prec1": 91.0}, tmp_path / "ckpt.th")
    target = load_checkpoint(tiny_cnn(seed=4), tmp_path / "ckpt.th")
    assert torch.equal(target.classifier.weight, source.classifier.weight)


def test_safetensors_checkpoint_loads(tmp_path):
    source = tiny_cnn(seed=5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = load_checkpoint(tiny_cnn(seed=6), tmp_path / "w.safetensors")
    assert torch.equal(target.features[0].weight, source.features[0].weight)


def test_pickled_code_is_refused_unless_trusted(tmp_path):
    state = dict(tiny_cnn().state_dict())
    torch.save({"state_dict": state, "extra": NotATensor()}, tmp_path / "pickled.pt")
    with pytest.raises(ConfigError, match="trusted_pickle=true"):
        load_checkpoint(tiny_cnn(), tmp_path / "pickled.pt")
    load_checkpoint(tiny_cnn(), tmp_path / "pickled.pt", trusted_pickle=True)


def test_mismatched_keys_are_listed(tmp_path):
    state = dict(tiny_cnn().state_dict())
    state["extra.weight"] = state.pop("classifier.weight")
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=r"missing keys \[classifier.weight\].*unexpected keys \[extra.weight\]"):
        load_checkpoint(tiny_cnn(), tmp_path / "bad.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="junk.pt"):
        load_checkpoint(tiny_cnn(), tmp_path / "junk.pt")
