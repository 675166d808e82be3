import pytest
import torch
from safetensors.torch import save_file

from big2small.checkpoints import load_checkpoint
from big2small.errors import ConfigError
from big2small.models.torchvision_models import torchvision_classifier
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


def test_a_safetensors_checkpoint_loads_into_a_model_whose_loader_wants_its_state_version(tmp_path):
    torch.manual_seed(0)
    source = torchvision_classifier("mnasnet0_5", num_classes=10)  # refuses a state without a version
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    target = load_checkpoint(torchvision_classifier("mnasnet0_5", num_classes=10), tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True))


def test_pickled_code_is_refused_unless_trusted(tmp_path):
    state = dict(tiny_cnn().state_dict())
    torch.save({"state_dict": state, "extra": NotATensor()}, tmp_path / "pickled.pt")
    with pytest.raises(ConfigError, match="needs code to load: it refers to .*NotATensor.*trusted_pickle=true"):
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
    with pytest.raises(ConfigError, match="junk.pt is neither a PyTorch checkpoint") as error:
        load_checkpoint(tiny_cnn(), tmp_path / "junk.pt")
    assert "trusted_pickle" not in str(error.value), "random bytes must not invite the unsafe flag"


class _RunsCode:
    def __reduce__(self):
        return (print, ("\x1b[31mthis must never print",))


def test_a_malicious_pickle_is_refused_naming_the_global_in_plain_text(tmp_path, capsys):
    torch.save({"state_dict": dict(tiny_cnn().state_dict()), "payload": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="refers to print, which was not run") as error:
        load_checkpoint(tiny_cnn(), tmp_path / "evil.pt")
    assert "\x1b" not in str(error.value) and "\n" not in str(error.value)
    assert "never print" not in capsys.readouterr().out


@pytest.mark.parametrize("poison, message", [(float("nan"), "holds NaN or inf"), (float("inf"), "holds NaN or inf")])
def test_non_finite_weights_are_refused_with_their_name(tmp_path, poison, message):
    state = dict(tiny_cnn().state_dict())
    state["classifier.weight"] = state["classifier.weight"].clone()
    state["classifier.weight"][0, 0] = poison
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ConfigError, match=f"classifier.weight {message}"):
        load_checkpoint(tiny_cnn(), tmp_path / "nan.pt")


def test_integer_weights_are_refused_not_cast(tmp_path):
    state = dict(tiny_cnn().state_dict())
    state["features.0.weight"] = state["features.0.weight"].to(torch.int32)
    torch.save(state, tmp_path / "int.pt")
    with pytest.raises(ConfigError, match="features.0.weight is torch.int32, the model expects floating point"):
        load_checkpoint(tiny_cnn(), tmp_path / "int.pt")
