"""Defaults are stated once, in the compressor classes; conf/compressor/*.yaml only chooses them (config_store.py)."""

import csv
import json
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from big2small.config_store import compressor_node
from big2small.methods.registry import available, compressor_class
from tests.conftest import PROJECT_ROOT, compose_config

COMPRESSOR_CONF = PROJECT_ROOT / "conf" / "compressor"


def _literals(node, path=""):
    """Dotted keys of the YAML node whose value is a literal rather than an interpolation."""
    found = []
    for key in node:
        if key == "defaults" and not path:
            continue
        if OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        found += _literals(value, f"{path}{key}.") if OmegaConf.is_dict(value) else [f"{path}{key}"]
    return found


# Presets: configs of a registered class that state the settings of a named method (the class's defaults are a
# different method); preset -> (class, the settings it states).
PRESETS = {"big2small_paper": ("big2small", {"storage": {"bits": 16, "codes_below": 0, "layer_choice": "inr"},
                                             "refinement": {"enabled": False}})}


def test_every_registered_compressor_has_a_config_and_no_config_is_orphaned():
    assert sorted(p.stem for p in COMPRESSOR_CONF.glob("*.yaml")) == sorted([*available(), *PRESETS])


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_changes_only_its_stated_settings_of_the_class_defaults(preset):
    name, stated = PRESETS[preset]
    yaml = OmegaConf.load(COMPRESSOR_CONF / f"{preset}.yaml")
    assert list(yaml.defaults) == [f"/compressor_defaults/{name}@_here_", "_self_"]
    composed = OmegaConf.to_container(compose_config([f"compressor={preset}"]).compressor)
    expected = compressor_node(name)
    for group, values in stated.items():
        assert {key: composed[group][key] for key in values} == values
        expected[group] = {**expected[group], **values}
    for key in ("seed", "fit"):  # interpolated from the run config
        composed.pop(key), expected.pop(key)
    assert composed == expected


@pytest.mark.parametrize("name", available())
def test_the_yaml_chooses_the_class_defaults_and_states_none_of_its_own(name):
    yaml = OmegaConf.load(COMPRESSOR_CONF / f"{name}.yaml")
    assert list(yaml.defaults) == [f"/compressor_defaults/{name}@_here_", "_self_"]
    assert _literals(yaml) == [], f"{name}.yaml states values; defaults belong in the class"


@pytest.mark.parametrize("name", available())
def test_a_run_config_holds_every_constructor_setting_at_its_default(name):
    composed = OmegaConf.to_container(compose_config([f"compressor={name}"]).compressor)
    expected = compressor_node(name)
    wired = {"seed", "fit"} if name == "big2small" else set()  # interpolated from the run config
    for key in wired:
        composed.pop(key), expected.pop(key)
    assert composed == expected
    cls = compressor_class(name)
    assert composed["_target_"] == f"{cls.__module__}.{cls.__qualname__}"


def test_a_changed_class_default_reaches_the_run_config(monkeypatch):
    cls = compressor_class("quant")
    monkeypatch.setattr(cls, "defaults", classmethod(lambda c: {"bits": 5, "target_ratio": None,
                                                               "layer_types": ["conv"], "min_params": 3}))
    composed = compose_config(["compressor=quant"]).compressor
    assert (composed.bits, list(composed.layer_types), composed.min_params) == (5, ["conv"], 3)


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory):
    """Weights for the small CNN, so that sweep jobs load them instead of each training its own."""
    from hydra.utils import instantiate
    from safetensors.torch import save_file

    model = instantiate(compose_config(["model=small_cnn", "data=digits"]).model.net)
    path = tmp_path_factory.mktemp("base") / "small_cnn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("launcher", [["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local"]], ids=["joblib", "submitit"])
def test_a_launched_sweep_composes_each_job_from_the_registered_defaults(tmp_path, launcher, base_weights):
    """joblib composes every job again in a worker process, submitit (as on Slurm) in a fresh Python process;
    the defaults must reach them there."""
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "src/train.py", "-m", *launcher,
         "model=small_cnn", "data=digits", f"model.checkpoint={base_weights}", "logger=none", f"hydra.sweep.dir={sweep}",
         f"paths.cache_dir={tmp_path / 'cache'}", "compressor=quant", "compressor.bits=4,8"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = sorted(p.parent for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 2, result.stderr[-2000:]  # a job that failed says why here
    configs = [OmegaConf.to_container(OmegaConf.load(job / ".hydra" / "config.yaml").compressor) for job in jobs]
    assert configs == [{**compressor_node("quant"), "bits": bits} for bits in (4, 8)]
    ratios = [json.loads((job / "metrics.json").read_text())["compression_ratio"] for job in jobs]
    assert ratios[0] > 1.9 * ratios[1]  # 4-bit codes against 8-bit ones
    with open(sweep / "summary.csv") as handle:  # a plain -m sweep (no experiment) is summarised too
        assert len(list(csv.DictReader(handle))) == 2
