"""conf/compressor/*.yaml and the Python classes state the same defaults (see docs/decisions.md, Package layout).

Keys whose YAML value is an interpolation (`${seed}`, paths) are run settings, not defaults, and are skipped.
"""

import dataclasses
import inspect

import pytest
from omegaconf import OmegaConf

from big2small.methods.registry import available, compressor_class
from tests.conftest import PROJECT_ROOT


def _python_defaults(cls) -> dict:
    defaults = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if parameter.default is inspect.Parameter.empty:
            continue
        value = parameter.default
        groups = getattr(cls, "SETTINGS_GROUPS", {})
        if name in groups:
            value = dataclasses.asdict(groups[name]())
        defaults[name] = list(value) if isinstance(value, tuple) else value
    return defaults


def _literal_values(node) -> dict:
    """The YAML node's values, interpolations dropped."""
    out = {}
    for key in node:
        if OmegaConf.is_interpolation(node, key):
            continue
        value = node[key]
        out[key] = _literal_values(value) if OmegaConf.is_dict(value) else OmegaConf.to_object(value) \
            if OmegaConf.is_list(value) else value
    return out


@pytest.mark.parametrize("name", available())
def test_yaml_defaults_equal_the_class_defaults(name):
    yaml = OmegaConf.load(PROJECT_ROOT / "conf" / "compressor" / f"{name}.yaml")
    cls = compressor_class(name)
    assert yaml._target_ == f"{cls.__module__}.{cls.__qualname__}"
    stated = _literal_values(yaml)
    stated.pop("_target_")
    python = _python_defaults(cls)
    assert set(stated) <= set(python), f"YAML keys the constructor does not take: {set(stated) - set(python)}"
    for key, value in stated.items():
        expected = python[key]
        if isinstance(value, dict):
            expected = {k: v for k, v in expected.items() if k in value}
        assert value == expected, f"{name}.{key}: YAML says {value!r}, the class {expected!r}"
