"""Built-in recipes: one TOML file per model with the settings of each stage.

This module reads the tables as dicts; deepcompress.compress.recipe (`read_recipe`) checks them into typed
stages, with the schema language of `recipes.schema`."""

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


def merge(base: dict, over: dict) -> dict:
    """`base` with `over` merged in, recursively for nested tables."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def stage(recipe: dict, name: str, dataset: str | None = None) -> dict:
    """Settings of stage `name`; a `[name.dataset.DATASET]` table overrides them for that data set."""
    table = dict(recipe.get(name, {}))
    per_dataset = table.pop("dataset", {})
    return merge(table, per_dataset.get(dataset, {})) if dataset else table
