"""Typed settings tables: a dataclass built from a dict (a TOML table), refusing unknown keys and values of
the wrong type with one line that names the recipe file, the table and the key, what was expected and what
was given, and the closest valid key.

A dataclass becomes a table by inheriting `Table`; its field annotations are the schema:

    int, float, str, bool          a value of that type (an integer is a valid float, a bool is neither)
    Annotated[int, Range(1, 8)]    ... within bounds; Annotated[str, OneOf(("a", "b"))]: one of the choices
    X | Y                          either
    dict[str, X]                   a table of NAME = X (per-layer settings)
    a Table subclass               a nested table, parsed with its own schema

Checks that involve several fields go in `__post_init__`, raising UserError; the message is prefixed with
the table it came from.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from dataclasses import dataclass, fields, is_dataclass
from typing import Annotated, ClassVar, Union, get_args, get_origin, get_type_hints

from ..errors import UserError


@dataclass(frozen=True)
class Where:
    """Where a table comes from, for messages: the recipe file (when known) and the table's dotted name."""

    file: str | None = None
    table: str = ""

    def child(self, key: str) -> Where:
        """The nested table `key` of this one."""
        return Where(self.file, f"{self.table}.{key}" if self.table else key)

    def __str__(self) -> str:
        head = f"recipe {self.file}:" if self.file else "recipe:"
        return f"{head} [{self.table}]" if self.table else head

    def error(self, message: str) -> UserError:
        """A UserError whose one line starts with this place."""
        return UserError(f"{self} {message}")


@dataclass(frozen=True)
class Range:
    """Bounds on a number: lo <= value <= hi (value < hi when `open_hi`); None is unbounded."""

    lo: float | None = None
    hi: float | None = None
    open_hi: bool = False

    def allows(self, value) -> bool:
        """Whether `value` lies within the bounds."""
        above = self.lo is None or value >= self.lo
        below = self.hi is None or (value < self.hi if self.open_hi else value <= self.hi)
        return above and below

    def describe(self) -> str:
        """The bounds in words, e.g. "in 1..8", "in [0, 1)", ">= 0"."""
        if self.hi is None:
            return f">= {self.lo}"
        if self.open_hi:
            return f"in [{self.lo}, {self.hi})"
        return f"in {self.lo}..{self.hi}"


@dataclass(frozen=True)
class OneOf:
    """A value from a fixed list of choices."""

    choices: tuple

    def allows(self, value) -> bool:
        """Whether `value` is one of the choices."""
        return value in self.choices

    def describe(self) -> str:
        """The choices in words."""
        if len(self.choices) == 1:
            return repr(self.choices[0])
        return "one of " + ", ".join(map(repr, self.choices))


def suggestion(key: str, known: Iterable[str]) -> str:
    """" (did you mean 'x'?)" for the closest of `known` (one that starts with `key` first: 'attn.in_proj'
    means 'attn.in_proj_weight', not the closer-spelled 'attn.out_proj'), or the list of `known` when none
    is close."""
    known = list(known)
    close = [k for k in known if key and k.startswith(key)][:1] or difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(known)})" if known else ""


def refuse_unknown(names: Iterable[str], known: Iterable[str], where: Where, noun: str = "key") -> None:
    """Raise for the first of `names` that is not in `known`, suggesting the closest known one."""
    known = list(known)
    for name in names:
        if name not in known:
            raise where.error(f"unknown {noun} {name!r}{suggestion(name, known)}")


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table",
          list: "a list"}


def _kind(value) -> str:
    """What a given value is, in words."""
    for python_type, words in _KINDS.items():
        if isinstance(value, python_type):
            return words
    return f"a {type(value).__name__}"


def _is_union(hint) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _is_table(hint) -> bool:
    return isinstance(hint, type) and is_dataclass(hint) and issubclass(hint, Table)


def describe(hint) -> str:
    """What a type hint accepts, in words ("an integer in 1..8 or 'auto'")."""
    if get_origin(hint) is Annotated:
        base, *rules = get_args(hint)
        said = [rule.describe() for rule in rules]
        if any(isinstance(rule, OneOf) for rule in rules):
            return " ".join(said)
        return " ".join([describe(base), *said])
    if _is_union(hint):
        return " or ".join(describe(h) for h in get_args(hint) if h is not type(None))
    if get_origin(hint) is dict:
        return f"a table of NAME = {describe(get_args(hint)[1])}"
    if _is_table(hint):
        return "a table"
    return _KINDS.get(hint, getattr(hint, "__name__", str(hint)))


def _base_fits(value, hint) -> bool:
    """Whether `value` has the Python type `hint` asks for, ignoring bounds and choices."""
    if get_origin(hint) is Annotated:
        return _base_fits(value, get_args(hint)[0])
    if _is_union(hint):
        return any(_base_fits(value, h) for h in get_args(hint))
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, get_origin(hint) or hint)


def _fits(value, hint) -> bool:
    """Whether `value` satisfies `hint`, bounds and choices included."""
    if get_origin(hint) is Annotated:
        base, *rules = get_args(hint)
        return _fits(value, base) and all(rule.allows(value) for rule in rules)
    if _is_union(hint):
        return any(_fits(value, h) for h in get_args(hint))
    return _base_fits(value, hint)


def check_value(value, hint, where: Where, key: str):
    """`value` of `key` checked against `hint`; nested tables come back parsed, other values unchanged."""
    if _is_table(hint) or get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise where.error(f"{key} = {value!r} ({_kind(value)}): expected {describe(hint)}")
        if _is_table(hint):
            return hint.from_dict(value, where.child(key))
        inner, sub = get_args(hint)[1], where.child(key)
        return {name: check_value(v, inner, sub, name) for name, v in value.items()}
    if not _fits(value, hint):
        given = "" if _base_fits(value, hint) else f" ({_kind(value)})"
        raise where.error(f"{key} = {value!r}{given}: expected {describe(hint)}")
    return value


class Table:
    """Mixin for a dataclass of settings read from a recipe table (see the module docstring)."""

    TABLE: ClassVar[str] = ""  # the table's name when no `where` is given, e.g. "train"

    @classmethod
    def from_dict(cls, values: dict, where: Where | None = None):
        """An instance from the dict `values`, refusing unknown keys and wrong types with one line.

        Example:
            TrainConfig.from_dict({"epochs": 3})     # TrainConfig(epochs=3, ...)
            TrainConfig.from_dict({"epoch": 3})      # UserError: recipe: [train] unknown key 'epoch'
                                                     #   (did you mean 'epochs'?)
        """
        where = where if where is not None else Where(table=cls.TABLE)
        if not isinstance(values, dict):
            raise where.error(f"expected a table, got {values!r} ({_kind(values)})")
        hints = get_type_hints(cls, include_extras=True)  # annotations are strings until resolved here
        refuse_unknown(values, [f.name for f in fields(cls) if f.init], where)
        checked = {key: check_value(value, hints[key], where, key) for key, value in values.items()}
        try:
            return cls(**checked)
        except UserError as exc:
            raise where.error(str(exc)) from None
