"""Built-in recipes: one TOML file per model with the settings of each stage."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from ..errors import UserError


def recipe_path(model: str) -> Path:
    """Path of the built-in recipe for `model`."""
    return Path(str(resources.files(__package__).joinpath(f"{model}.toml")))


def load_recipe(model: str, path: str | Path | None = None) -> dict:
    """The recipe at `path`, or the built-in one for `model`, as a dict of stage tables."""
    path = Path(path) if path else recipe_path(model)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"recipe {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"recipe {path}: {exc}") from None


def stage(recipe: dict, name: str, dataset: str | None = None) -> dict:
    """Settings of stage `name`, with a `[name.DATASET]` sub-table overriding them for that data set."""
    table = dict(recipe.get(name, {}))
    overrides = {k: v for k, v in table.items() if isinstance(v, dict)}
    for key in overrides:
        table.pop(key)
    if dataset in overrides:
        table.update(overrides[dataset])
    return table
