"""The compressors' settings and defaults, registered with Hydra so that the run config takes them from the code.

Each registered compressor's `defaults()` (its constructor's keyword arguments and option groups) becomes the
config node `compressor_defaults/<name>`, with `_target_` naming the class. `conf/compressor/<name>.yaml` holds
no default of its own: it chooses that node in its defaults list and adds only the run's wiring (`seed: ${seed}`,
cache paths). So a default is stated once, in Python, and `python src/train.py compressor=<name> --cfg job` shows
every setting a run can override.

Hydra's launchers carry the registrations to their workers (joblib and submitit hand Hydra's singletons, the
config store among them, to every job), so sweeps compose the same config as single runs.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from big2small.methods.registry import available, compressor_class

GROUP = "compressor_defaults"


def compressor_node(name: str) -> dict:
    """The run-config node of compressor `name`: `_target_` and every setting at its default."""
    cls = compressor_class(name)
    return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **cls.defaults()}


def register_compressor_defaults() -> None:
    """Make `compressor_defaults/<name>` available to Hydra for every registered compressor (idempotent)."""
    store = ConfigStore.instance()
    for name in available():
        store.store(group=GROUP, name=name, node=compressor_node(name))
