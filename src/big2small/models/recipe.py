"""How a model was built, carried by the model itself: the builder's name in `models.catalog` and its arguments.

Every builder in this package records its recipe on the model it returns, so that `big2small.compress` and a run
can store it in the artifact beside the rest of the model, and `big2small.load(path)` can build the architecture
again without being given one. A model built elsewhere has no recipe; its artifacts then need the model to load.
"""

from __future__ import annotations

import json
from typing import Any

from torch import nn

RECIPE_ATTRIBUTE = "big2small_recipe"


def remember_recipe(model: nn.Module, builder: str, arguments: dict[str, Any]) -> nn.Module:
    """Record on `model` that `catalog.build_model({"builder": builder, "arguments": arguments})` builds it again.
    Arguments that are not plain JSON values (a user's own object) leave the model without a recipe."""
    arguments = {key: list(value) if isinstance(value, tuple) else value for key, value in arguments.items()}
    try:
        recipe = json.loads(json.dumps({"builder": builder, "arguments": arguments}))
    except (TypeError, ValueError):
        return model
    setattr(model, RECIPE_ATTRIBUTE, recipe)
    return model


def recipe_of(model: nn.Module) -> dict[str, Any] | None:
    """The recipe a builder of this package recorded on `model`, or None."""
    recipe = getattr(model, RECIPE_ATTRIBUTE, None)
    return dict(recipe) if isinstance(recipe, dict) else None
