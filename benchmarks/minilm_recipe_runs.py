"""benchmarks/minilm.py's two modes that make no file: per-layer sensitivity (`--sensitivity`, which chose
minilm.toml's [prune.layers] and [quantize.layers]) and the built-in recipe's stages on the PyTorch model
(`--torch-recipe WINDOWS`)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from deepcompress.compress.prune import prunable_layers
from deepcompress.compress.recipe import LAYER_TABLES, read_recipe
from deepcompress.minilm import MiniLM
from deepcompress.minilm_distill import cosine_error, targets
from deepcompress.minilm_text import Encoder, torch_model
from minilm_eval import EvalSets, quality, real_windows

ROOT = Path(__file__).resolve().parents[1]
SENSITIVITY = ROOT / "benchmarks" / "results" / "minilm_sensitivity.json"
TORCH_RECIPE = ROOT / "benchmarks" / "results" / "minilm_torch_recipe.json"
SENSITIVITY_GRID = (0.0, 0.5, 0.7, 0.8, 0.9)
SENSITIVITY_BITS = (2, 3, 4, 5)


def sensitivity_run(model: MiniLM, tokenizer, windows: int, length: int, tolerance: float,
                    bits_tolerance: float) -> dict:
    """Per Linear layer, 1 - mean cosine to the dense model on held-out windows with only that layer pruned,
    and with only that layer weight-shared (deepcompress.compress.sensitivity with the distillation
    error), and the suggested sparsities and bits."""
    from deepcompress.compress.sensitivity import bits_sensitivity, sensitivity, suggest_bits, suggest_sparsity

    x = torch.from_numpy(real_windows(tokenizer, length)[:windows])
    y = targets(model, x)
    start = time.perf_counter()
    curves = sensitivity(model, x, y, grid=SENSITIVITY_GRID, error=cosine_error)
    pruned_s = time.perf_counter() - start
    bits = bits_sensitivity(model, x, y, widths=SENSITIVITY_BITS, error=cosine_error)
    return {"measure": "1 - mean cosine to the dense model's pooled states, no retraining",
            "inputs": f"{len(x)} held-out lee_background windows of {length} tokens", "tolerance": tolerance,
            "curves": curves, "suggested_sparsity": suggest_sparsity(curves, tolerance),
            "bits_tolerance": bits_tolerance, "bits_curves": bits,
            "suggested_bits": suggest_bits(bits, bits_tolerance),
            "prune_s": pruned_s, "bits_s": time.perf_counter() - start - pruned_s}


def only_layers(recipe, layers: list[str]):
    """`recipe` with its [STAGE.layers] tables cut to the entries naming one of `layers`."""
    from dataclasses import replace

    cut = {t: replace(stage, layers={n: v for n, v in stage.layers.items() if n in layers})
           for t in LAYER_TABLES if (stage := getattr(recipe, t)) is not None}
    return replace(recipe, **cut)


def torch_recipe_run(model: MiniLM, tokenizer, sets: EvalSets, max_windows: int, out: Path,
                     recipe_path: Path | None = None, quick: bool = False) -> dict:
    """The built-in recipe's prune + retrain and weight sharing + fine-tuning stages (the pipeline's own
    functions, distilling with CosineDistill) on the PyTorch model, without the file: Linear layers only,
    the embedding tables stay float32. Quality against the dense model, no size. `quick`: the model is
    the first layers of all-MiniLM-L6-v2, and the recipe's entries for the others are dropped."""
    import copy
    from dataclasses import replace

    from deepcompress.compress.pipeline import Run, prune_stage, quantize_stage
    from deepcompress.minilm_distill import CosineDistill, distill_data

    layers = prunable_layers(model)
    recipe = read_recipe("minilm", recipe_path)
    if quick:
        recipe = only_layers(recipe, layers)
    recipe.check_layers(layers, "all-MiniLM-L6-v2")  # a named layer the model lacks: refused, not a KeyError
    data = distill_data(model, tokenizer, replace(recipe.distill, max_windows=max_windows))
    dense_sentences = Encoder(torch_model(model), tokenizer).embed(sets.sentences)
    student = copy.deepcopy(model)
    run = Run(out, data, progress=False, objective=CosineDistill())
    start = time.perf_counter()
    masks = prune_stage(student, recipe.prune, run)
    shared = quantize_stage(student, masks, recipe.quantize, run)
    student.eval()
    return {"setting": "recipe, PyTorch only (Linear layers; embeddings float32)", "recipe": recipe.file,
            "train_windows": len(data.train_x),
            "density": masks.density(), "bits": shared.bits(), "stages": run.log,
            "wall_s": time.perf_counter() - start,
            **quality(Encoder(torch_model(student), tokenizer), sets, dense_sentences)}
