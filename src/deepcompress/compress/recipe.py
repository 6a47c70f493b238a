"""A compression recipe, typed: one dataclass per stage ([train], [prune], [quantize], [encode]), read from
the TOML tables and checked completely before any work starts.

Every setting a stage reads is a field here with its default; an unknown key, table or data set, a value
of the wrong type or range, or a layer the model does not have is refused with one line naming the recipe
file, the table and the key (see deepcompress.recipes.schema):

    recipe lenet-300-100.toml: [prune] unknown key 'iteratons' (did you mean 'iterations'?)

`[STAGE.dataset.NAME]` tables override a stage's settings for data set NAME (deepcompress.recipes.stage);
`Recipe.for_dataset(NAME)` is the recipe as that data set sees it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from ..data import DATASETS
from ..errors import UserError
from ..format import VALUE_TYPES
from ..recipes import load_recipe, recipe_path, stage
from ..recipes.schema import OneOf, Range, Table, Where, refuse_unknown, suggestion
from ..train import TrainConfig
from .quantize import INITS

PRUNE_RULES = ("sparsity", "std", "global")
PRUNE_SCHEDULES = ("iterative", "gradual")
QUANTIZE_METHODS = ("kmeans", "uniform")

Fraction = Annotated[float, Range(0, 1, open_hi=True)]
Bits = Annotated[int, Range(1, 8)]
GapBits = Bits | Annotated[str, OneOf(("auto",))]


@dataclass
class FineTuneConfig(TrainConfig):
    """[quantize.finetune]: centroid fine-tuning; without `epochs` (or without the table) there is none."""

    TABLE = "quantize.finetune"

    epochs: int = 0


@dataclass(frozen=True)
class PruneStage(Table):
    """[prune]: magnitude pruning with retraining.

    `rule` "sparsity": [prune.layers] gives the fraction of weights removed per layer; "std": a quality
    factor per layer (prune |w| < quality x std); "global": one threshold for `sparsity` overall.
    `schedule` "iterative": `iterations` prune/retrain rounds, the kept fraction falling geometrically to
    the target; "gradual": the polynomial schedule during one retraining, a pruning step `every` steps.
    `l1` > 0 adds an L1 penalty of that strength while retraining.
    """

    TABLE = "prune"

    rule: Annotated[str, OneOf(PRUNE_RULES)] = "sparsity"
    schedule: Annotated[str, OneOf(PRUNE_SCHEDULES)] = "iterative"
    iterations: Annotated[int, Range(1)] = 1
    every: Annotated[int, Range(1)] = 100
    sparsity: Fraction | None = None
    l1: Annotated[float, Range(0)] = 0.0
    layers: dict[str, Annotated[float, Range(0)]] = field(default_factory=dict)
    retrain: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.schedule == "gradual" and self.rule != "sparsity":
            raise UserError(f"schedule = 'gradual' prunes to the per-layer sparsities of [prune.layers]; "
                            f"it needs rule = 'sparsity', got {self.rule!r}")
        if self.rule == "global":
            _check_global(self)
        else:
            _check_per_layer(self)


def _check_global(prune: PruneStage) -> None:
    """rule = "global" takes one overall `sparsity` and no per-layer table."""
    if prune.sparsity is None:
        raise UserError("rule = 'global' needs sparsity (the fraction of all weights removed)")
    if prune.layers:
        raise UserError("rule = 'global' prunes every layer to one threshold; drop [prune.layers] or "
                        "use rule = 'sparsity'")


def _check_per_layer(prune: PruneStage) -> None:
    """rule = "sparsity" or "std" takes [prune.layers] (fractions in [0, 1) for "sparsity")."""
    if prune.sparsity is not None:
        raise UserError(f"sparsity is the overall target of rule = 'global'; with rule = {prune.rule!r} "
                        f"give per-layer values in [prune.layers]")
    if not prune.layers:
        raise UserError(f"rule = {prune.rule!r} needs a [prune.layers] table (layer = "
                        f"{'fraction removed' if prune.rule == 'sparsity' else 'quality factor'})")
    if prune.rule == "sparsity":
        for name, value in prune.layers.items():
            if not value < 1:
                raise UserError(f"layers.{name} = {value!r}: expected a fraction removed in [0, 1)")


@dataclass(frozen=True)
class QuantizeStage(Table):
    """[quantize]: weight sharing per layer (k-means or uniform levels), then centroid fine-tuning.

    Each layer gets 2**bits clusters: its [quantize.layers] entry, else `fc_bits` or `conv_bits`.
    """

    TABLE = "quantize"

    method: Annotated[str, OneOf(QUANTIZE_METHODS)] = "kmeans"
    init: Annotated[str, OneOf(INITS)] = "linear"
    iters: Annotated[int, Range(0)] = 100
    fc_bits: Bits = 5
    conv_bits: Bits = 8
    layers: dict[str, Bits] = field(default_factory=dict)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)

    def bits(self, kinds: Mapping[str, str]) -> dict[str, int]:
        """Weight bits per layer, for layers named in `kinds` ("fc" or "conv")."""
        return per_layer(self.layers, self.fc_bits, self.conv_bits, kinds)


@dataclass(frozen=True)
class EncodeStage(Table):
    """[encode]: how the file stores the model. `values` "f32" or "f16" is the type of codebooks and biases;
    a layer's relative-index width is its [encode.layers] entry, else `fc_gap_bits` or `conv_gap_bits`
    (1..8, or "auto": the width that makes the layer smallest)."""

    TABLE = "encode"

    values: Annotated[str, OneOf(tuple(VALUE_TYPES))] = "f32"
    fc_gap_bits: GapBits = "auto"
    conv_gap_bits: GapBits = "auto"
    layers: dict[str, GapBits] = field(default_factory=dict)

    def gap_bits(self, kinds: Mapping[str, str]) -> dict[str, int | str]:
        """Relative-index width per layer ("auto" or 1..8), for layers named in `kinds` ("fc" or "conv")."""
        return per_layer(self.layers, self.fc_gap_bits, self.conv_gap_bits, kinds)


def per_layer(layers: Mapping[str, object], fc, conv, kinds: Mapping[str, str]) -> dict:
    """Each layer's own setting from `layers`, else the one for its kind ("fc" or "conv")."""
    return {name: layers.get(name, conv if kind == "conv" else fc) for name, kind in kinds.items()}


DISTILL_CORPORA = ("lee-background",)
DISTILL_LOSSES = ("cosine",)


@dataclass(frozen=True)
class DistillStage(Table):
    """[distill]: retrain against a teacher's outputs on unlabelled text instead of labels (a pretrained
    sentence encoder such as all-MiniLM-L6-v2; see deepcompress.minilm_distill).

    `corpus` is the text: "lee-background" (gensim's lee_background.cor), its last `held_out` fraction of
    documents kept for evaluation; it is cut into windows of `window` word pieces ([CLS] and [SEP]
    included), at most `max_windows` of them for training (0: all). `loss` "cosine": 1 - cosine
    similarity of student and teacher sentence embeddings.
    """

    TABLE = "distill"

    corpus: Annotated[str, OneOf(DISTILL_CORPORA)] = "lee-background"
    window: Annotated[int, Range(3, 512)] = 64
    held_out: Annotated[float, Range(0.01, 0.5)] = 0.1
    max_windows: Annotated[int, Range(0)] = 0
    loss: Annotated[str, OneOf(DISTILL_LOSSES)] = "cosine"


STAGES: dict[str, type[Table]] = {"train": TrainConfig, "prune": PruneStage, "quantize": QuantizeStage,
                                  "encode": EncodeStage, "distill": DistillStage}
LAYER_TABLES = ("prune", "quantize", "encode")  # the stages with a per-layer [STAGE.layers] table


@dataclass(frozen=True)
class Recipe:
    """A whole recipe, checked: the settings of each stage (None where the recipe has no such table).
    A [distill] table means the retraining stages learn from a teacher model's outputs, not labels.

    `datasets` holds, per data set named in a `[STAGE.dataset.NAME]` table, the recipe as that data set
    sees it. Build one with `Recipe.from_dict(tables)` or `read_recipe(model, path)`.

    Example:
        recipe = Recipe.from_dict({"prune": {"layers": {"ip1": 0.9}}, "quantize": {"fc_bits": 4}})
        recipe.prune.iterations                  # 1 (the default)
        Recipe.from_dict({"prune": {"iteratons": 3}})
        # UserError: recipe: [prune] unknown key 'iteratons' (did you mean 'iterations'?)
    """

    train: TrainConfig | None = None
    prune: PruneStage | None = None
    quantize: QuantizeStage | None = None
    encode: EncodeStage = field(default_factory=EncodeStage)
    distill: DistillStage | None = None
    file: str | None = None
    datasets: dict[str, Recipe] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, tables: dict, file: str | None = None,
                  datasets: Iterable[str] = DATASETS) -> Recipe:
        """The recipe in `tables` (as read from TOML), every table and every data-set override checked.

        `file` names the recipe in messages; `datasets` are the data set names an override may use.
        """
        where = Where(file)
        refuse_unknown(tables, STAGES, where, noun="table")
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise where.error(f"{name} = {table!r}: expected a table [{name}]")
        names = _override_names(tables, where, list(datasets))
        base = _resolve(tables, None, where)
        return cls(**base, file=file, datasets={d: cls(**_resolve(tables, d, where), file=file) for d in names})

    def for_dataset(self, name: str | None) -> Recipe:
        """The recipe with data set `name`'s overrides applied (itself when it has none)."""
        return self.datasets.get(name, self) if name is not None else self

    def where(self, table: str = "") -> Where:
        """This recipe's `table`, for messages."""
        return Where(self.file, table)

    def require(self, tables: Iterable[str], purpose: str) -> None:
        """Refuse a recipe without one of `tables`; `purpose` says who needs which ("compress needs ...")."""
        for name in tables:
            if getattr(self, name) is None:
                raise UserError(f"{f'recipe {self.file}' if self.file else 'the recipe'} has no [{name}] table; "
                                f"{purpose}")

    def check_layers(self, layers: Iterable[str], model: str = "the model", tied: dict | None = None) -> None:
        """Refuse a [STAGE.layers] entry, in the recipe or a data-set override, naming none of `layers` (or
        a layer whose weight is tied to another's: `tied` maps it to the layer to name instead)."""
        layers, tied = list(layers), tied or {}
        variants = [("", self)] + [(f".dataset.{d}", r) for d, r in self.datasets.items()]
        for place, recipe in variants:
            for name in LAYER_TABLES:
                settings = getattr(recipe, name)
                unknown = [n for n in (settings.layers if settings else ()) if n not in layers]
                if unknown:
                    hint = (f" of its own: its weight is tied to {tied[unknown[0]]!r}; name {tied[unknown[0]]!r}"
                            if unknown[0] in tied else suggestion(unknown[0], layers))
                    raise self.where(f"{name}{place}.layers").error(f"{model} has no layer {unknown[0]!r}{hint}")


def _override_names(tables: dict, where: Where, allowed: list[str]) -> list[str]:
    """The data set names of all `[STAGE.dataset.NAME]` tables, each checked."""
    names = []
    for name, table in tables.items():
        overrides = table.get("dataset", {})
        sub = where.child(f"{name}.dataset")
        if not isinstance(overrides, dict) or not all(isinstance(t, dict) for t in overrides.values()):
            raise sub.error("expected one table [STAGE.dataset.NAME] per data set")
        refuse_unknown(overrides, allowed, sub, noun="data set")
        names += [d for d in overrides if d not in names]
    return names


def _resolve(tables: dict, dataset: str | None, where: Where) -> dict:
    """Each stage's settings for `dataset` (None: the base tables), by stage name."""
    out = {}
    for name, table in tables.items():
        overridden = dataset in table.get("dataset", {})
        place = where.child(f"{name}.dataset.{dataset}" if overridden else name)
        out[name] = STAGES[name].from_dict(stage(tables, name, dataset), place)
    return out


def read_recipe(model: str, path: str | Path | None = None, datasets: Iterable[str] = DATASETS) -> Recipe:
    """The recipe at `path`, or the built-in one for `model`, read and checked (see `Recipe.from_dict`)."""
    name = str(path) if path else recipe_path(model).name
    return Recipe.from_dict(load_recipe(model, path), file=name, datasets=datasets)


def as_recipe(recipe: Recipe | dict, datasets: Iterable[str] = DATASETS) -> Recipe:
    """`recipe` itself if typed, else the dict of tables checked into a Recipe."""
    return recipe if isinstance(recipe, Recipe) else Recipe.from_dict(recipe, datasets=datasets)
