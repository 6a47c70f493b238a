"""The compression steps the studies compose, with the built-in recipe's retraining and fine-tuning settings:
prune to given sparsities, retrain with the masks kept, share weights (k-means or uniform levels), fine-tune
the centroids, and write a real .dcz file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..compress import Masks, SharedWeights, TargetSparsity, write_model
from ..compress.pipeline import layer_kinds
from ..compress.recipe import read_recipe


def recipe(model: str, dataset: str = "mnist"):
    """The model's built-in recipe as `dataset` sees it."""
    return read_recipe(model, None).for_dataset(dataset)


def prune(model, sparsity: dict[str, float] | float, masks: Masks | None = None) -> Masks:
    """Prune each layer of `model` to its sparsity (one number: every Linear/Conv2d layer), smallest
    magnitudes first; more pruning on top of `masks` when given."""
    masks = masks or Masks(model)
    targets = sparsity if isinstance(sparsity, dict) else {n: sparsity for n in masks.modules}
    masks.prune({n: TargetSparsity(s) for n, s in targets.items()})
    return masks


def retrain(bench, name: str, model, masks: Masks, epochs: int, dataset: str = "mnist", hooks=()) -> float:
    """Retrain the pruned `model` (recipe [prune.retrain] settings, `epochs`) with its masks; test error."""
    cfg = replace(recipe(name, dataset).prune.retrain, epochs=epochs)
    return bench.fit(model, dataset, cfg, hooks=(masks, *hooks)) if epochs > 0 else bench.error(model, dataset)


def quantize(model, masks: Masks, bits: dict[str, int] | int, method: str = "kmeans",
             init: str = "linear") -> SharedWeights:
    """Share the weights of every masked layer: 2^bits levels per layer (one number: every layer)."""
    per_layer = bits if isinstance(bits, dict) else {n: bits for n in masks.modules}
    full = {n: per_layer.get(n, 8) for n in masks.modules}
    return SharedWeights(model, masks, full, init=init, method=method)


def finetune(bench, name: str, model, masks: Masks, shared: SharedWeights, epochs: int,
             dataset: str = "mnist", train_images: int | None = None) -> float:
    """Fine-tune the centroids (recipe [quantize.finetune] settings, `epochs` over the first `train_images`
    training images, default all); test error."""
    if epochs > 0:
        cfg = replace(recipe(name, dataset).quantize.finetune, epochs=epochs)
        bench.fit(model, dataset, cfg, hooks=(masks, shared), train_images=train_images)
        shared.after_step(model)
    return bench.error(model, dataset)


def write_dcz(path: Path, name: str, model, masks: Masks, shared: SharedWeights, dataset: str = "mnist") -> int:
    """Encode the quantized `model` as a .dcz file (float16 values, smallest relative-index width); bytes."""
    gaps = {n: "auto" for n in layer_kinds(masks)}
    meta = {"model": name, "dataset": dataset, "input_shape": [1, 28, 28]}
    return write_model(path, model, shared, gaps, shared.bits(), meta, "f16")
