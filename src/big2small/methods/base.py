"""The compressor interface every method implements.

A compressor is a function of (model, settings): `fit` reads a trained model and returns a `Compressed`
(tensors + metadata, see codec.py); the class method `rebuild` writes what the artifact holds back into a
freshly built model of the same architecture. `rebuild` reads nothing but the artifact, so a model can be
restored from the file alone.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from big2small.codec import Compressed, first_nonfinite
from big2small.errors import ConfigError, FittingError
from big2small.graph.weights import architecture_signature, compressible_weights
from big2small.methods.header import Field, check_declared_header, check_payload_sizes
from big2small.process_memory import release_garbage
from big2small.values import as_integer, as_number

TrainerFactory = Callable[..., Any]


class Compressor(ABC):
    """Settings every compressor takes: target_ratio (the measured compression ratio to meet; None: the method's
    own fixed setting decides), layer_types (which layers are compressed: conv, linear) and min_params (layers
    with fewer weights are left alone)."""

    name: ClassVar[str]
    # The tensors its artifacts may hold, by name, with their dtype (checked before anything is decoded).
    ARTIFACT_TENSORS: ClassVar[dict[str, torch.dtype]] = {}
    # True when fit() looks at data (calibration images, labels); recorded in metrics.json.
    uses_data: ClassVar[bool] = False
    # The header it writes (methods/header.py): fields beyond `replaced` and `layers`, and per-layer fields beyond
    # `name` and `shape`. None: the compressor checks its header itself in check_artifact.
    META_FIELDS: ClassVar[dict[str, Field] | None] = None
    LAYER_FIELDS: ClassVar[dict[str, Field]] = {}
    # Option groups: constructor argument -> the dataclass whose fields are that group's settings.
    SETTINGS_GROUPS: ClassVar[dict[str, type]] = {}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every setting with its default, as a run config holds it: the constructor's keyword arguments, an
        option group as a dict of its dataclass's fields. This is the one place defaults are stated; the run
        config takes them from here (see config_store.py) and the YAML under conf/compressor only chooses."""
        values: dict[str, Any] = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or parameter.default is inspect.Parameter.empty:
                continue
            value = parameter.default
            if name in cls.SETTINGS_GROUPS:
                value = dataclasses.asdict(cls.SETTINGS_GROUPS[name]())
            values[name] = list(value) if isinstance(value, tuple) else value
        return values

    def __init__(
        self,
        target_ratio: float | None = None,
        layer_types: tuple[str, ...] | list[str] = ("conv", "linear"),
        min_params: int = 0,
    ) -> None:
        self.target_ratio = None if target_ratio is None else as_number(f"{self.name}: target_ratio", target_ratio, 1)
        min_params = as_integer(f"{self.name}: min_params", min_params, 0)
        self.model_signature: dict | None = None  # set by compress(): the architecture the artifact is for
        self.layer_types = tuple(layer_types)
        self.min_params = int(min_params)
        try:
            compressible_weights(nn.Sequential(), self.layer_types)
        except ValueError as error:
            raise ConfigError(f"{self.name}: {error}") from None

    def accept_input_shape(self, shape: list[int] | None) -> None:
        """The data's input shape (a setting, not data), offered by the pipeline before fit(). Compressors that
        run the model on synthetic inputs use it when not told a shape of their own; the rest ignore it."""
        return None

    def select(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The weights this compressor replaces, by parameter name."""
        weights = compressible_weights(model, self.layer_types, self.min_params)
        if not weights:
            raise ConfigError(
                f"{self.name}: the model has no {'/'.join(self.layer_types)} weights with >= {self.min_params} "
                "parameters to compress"
            )
        for name, weight in weights.items():
            if not torch.isfinite(weight).all():
                raise FittingError(f"{self.name}: layer {name} has NaN or inf weights before fitting")
        return {name: w.detach().float().cpu() for name, w in weights.items()}

    def settings(self) -> dict:
        """The settings stored in the artifact header (for provenance), and the architecture it is for (checked
        by rebuilding.rebuild_model when present)."""
        settings = {"target_ratio": self.target_ratio, "layer_types": list(self.layer_types),
                    "min_params": self.min_params}
        if self.model_signature is not None:
            settings["model"] = self.model_signature
        return settings

    def compress(self, model: nn.Module, *, data: Any = None,
                 trainer_factory: TrainerFactory | None = None) -> Compressed:
        """fit(), with the model's architecture signature recorded in the artifact header (and so counted in its
        bytes, sizing passes included). What the pipeline and the Python API call."""
        self.model_signature = architecture_signature(model)
        try:
            compressed = self.fit(model, data=data, trainer_factory=trainer_factory)
        finally:
            self.model_signature = None
        release_garbage()  # what the fit's trainers and modules left in reference cycles, before the caller allocates
        bad = first_nonfinite(compressed.tensors)
        if bad is not None:  # refused here as the fit's fault, before a reader would refuse it as the file's
            raise FittingError(f"{self.name}: the fit produced NaN or inf values in its tensor {bad!r}")
        return compressed

    @abstractmethod
    def fit(
        self, model: nn.Module, *, data: Any = None, trainer_factory: TrainerFactory | None = None
    ) -> Compressed:
        """Compress `model` (left unchanged). `meta["replaced"]` must list the parameter names replaced."""

    @classmethod
    def check_artifact(cls, compressed: Compressed, model: nn.Module) -> None:
        """Raise ValueError unless the artifact's tensors and layer list fit this method and `model`. Runs before
        any decoding, so a forged size cannot make the rebuild allocate more than the model itself holds."""
        for name, tensor in compressed.tensors.items():
            if name not in cls.ARTIFACT_TENSORS:
                raise ValueError(f"tensor {name!r} is not part of a {cls.name} artifact")
            if tensor.dtype != cls.ARTIFACT_TENSORS[name]:
                raise ValueError(f"tensor {name!r} is {tensor.dtype}, a {cls.name} artifact stores it as "
                                 f"{cls.ARTIFACT_TENSORS[name]}")
        check_layer_list(compressed.meta, model)
        if cls.META_FIELDS is not None:
            check_declared_header(compressed.meta, cls.META_FIELDS, cls.LAYER_FIELDS)
            check_payload_sizes(compressed.tensors, cls.payload_sizes(compressed.meta))

    @classmethod
    def check_values(cls, tensors: dict[str, torch.Tensor]) -> None:
        """Raise ValueError naming the tensor when a finite value is still one this method never writes (a negative
        range, a zero scale). Runs after check_artifact and after every floating tensor was found finite
        (rebuilding.py), so sizes and dtypes already hold. Most methods accept any finite value."""
        return None

    @classmethod
    def payload_sizes(cls, meta: dict) -> dict[str, int | range]:
        """Each tensor's element count as the (checked) header implies it; compressors that declare META_FIELDS
        state it."""
        raise NotImplementedError(f"{cls.name} declares its header fields but not its payload sizes")

    @classmethod
    @abstractmethod
    def rebuild(cls, compressed: Compressed, model: nn.Module) -> nn.Module:
        """Write the artifact's parameters into `model` (same architecture as the original) and return it."""


def require_at_least(values: torch.Tensor | None, name: str, low: float, strict: bool = False) -> None:
    """Every one of `values` (an artifact tensor, or part of one; None: absent) is >= low, or > low when strict;
    ValueError naming the tensor otherwise."""
    if values is None or not values.numel():
        return
    smallest = float(values.min())
    if smallest < low or (strict and smallest == low):
        raise ValueError(f"tensor {name!r} holds {smallest:g}, its values must be {'>' if strict else '>='} {low:g}")


def check_layer_list(meta: dict, model: nn.Module) -> None:
    """meta["layers"] (when present) names each replaced parameter once, in order, with the model's own shape."""
    layers = meta.get("layers")
    if layers is None:
        return
    replaced = meta["replaced"]
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise ValueError("its layer list is not a list of layers")
    names = [layer.get("name") for layer in layers]
    if names != replaced:
        raise ValueError("its layer list does not name the replaced parameters in order")
    for layer in layers:
        shape = model.get_parameter(layer["name"]).shape
        if layer.get("shape") != list(shape):
            raise ValueError(f"layer {layer['name']} has shape {layer.get('shape')} in the artifact, "
                             f"{list(shape)} in the model")
