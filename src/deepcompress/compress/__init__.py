"""Deep Compression: pruning, trained quantization (weight sharing), encoding to a .dcz file.

    masks = prune_layers(model, {"ip1": TargetSparsity(0.92)})      # then retrain with hooks=(masks,)
    shared = SharedWeights(model, masks, bits={"ip1": 5})           # then fine-tune with hooks=(masks, shared)
    outcome = compress_model(model, data, recipe, "out/")            # the whole pipeline, any Linear/Conv2d model

`recipe` is a dict of tables or a typed `Recipe` (read_recipe(model, path) reads and checks a TOML file);
`PipelineHooks` passed as compress_model(..., hooks=...) add training hooks and calls after each stage.
"""

from .export import architecture_ops, load_into, write_model
from .pipeline import PipelineHooks, compress_model
from .prune import (GradualPruning, L1Penalty, Masks, StdThreshold, TargetSparsity,
                    adjust_dropout, adjusted_dropout, polynomial_sparsity, prune_global, prune_layers)
from .quantize import SharedWeights, kmeans_1d, uniform_levels
from .recipe import Recipe, read_recipe

__all__ = ["GradualPruning", "L1Penalty", "Masks", "PipelineHooks", "Recipe", "SharedWeights", "StdThreshold",
           "TargetSparsity", "adjust_dropout", "adjusted_dropout", "architecture_ops", "compress_model",
           "kmeans_1d", "load_into", "polynomial_sparsity", "prune_global", "prune_layers", "read_recipe",
           "uniform_levels", "write_model"]
