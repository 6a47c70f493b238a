"""Compress the pretrained all-MiniLM-L6-v2 into a .dcz file: the recipe's pruning and weight sharing,
recovered by distillation against the uncompressed model's sentence embeddings on unlabelled text
(recipe [distill]); the file runs at any sequence length (its token axis is variable).

    outcome = compress_minilm("runs/minilm")       # the built-in recipe (recipes/minilm.toml)
    deepcompress run runs/minilm/model.dcz --text "A sentence." --text "Another one."
"""

from __future__ import annotations

import copy
from pathlib import Path

from .compress.recipe import Recipe, read_recipe
from .errors import UserError

MODEL = "minilm"
TOKEN_AXIS = 2  # of the file's input [N, 2, T]: ids and their positions (minilm_text.positions_of)


def minilm_recipe(path: str | Path | None = None) -> Recipe:
    """The recipe at `path` (default: the built-in minilm.toml), which must have [distill], [prune] and
    [quantize] (the model is pretrained: there is no [train])."""
    recipe = read_recipe(MODEL, path)
    recipe.require(("distill", "prune", "quantize"), "compressing all-MiniLM-L6-v2 needs [distill] (the text "
                                                     "it learns from), [prune] and [quantize]")
    if recipe.train is not None:
        raise UserError(f"{recipe.file}: all-MiniLM-L6-v2 is pretrained; a [train] table has no use here")
    return recipe


def compress_minilm(out: str | Path, recipe: Recipe | None = None, *, resume: bool = False,
                    overwrite: bool = False, progress: bool = True, command: str | None = None,
                    layers: int | None = None) -> dict:
    """Compress all-MiniLM-L6-v2 (its first `layers` encoder layers if given: a quick look) with `recipe`
    (default the built-in one) into OUT/model.dcz; compress_model's outcome. The uncompressed model is
    the teacher, and the test score is 1 - mean cosine to it on held-out windows."""
    from .compress import compress_model
    from .minilm import load_minilm
    from .minilm_distill import NAME, CosineDistill, distill_data
    from .minilm_text import TEXT_MODEL, load_tokenizer

    recipe = recipe or minilm_recipe()
    teacher = load_minilm(layers=layers)
    data = distill_data(teacher, load_tokenizer(), recipe.distill)
    meta = {"model": TEXT_MODEL, "text_model": TEXT_MODEL, "dataset": NAME}
    return compress_model(copy.deepcopy(teacher), data, recipe, out, meta=meta, resume=resume, overwrite=overwrite,
                          progress=progress, objective=CosineDistill(teacher), example_input=data.test_x[:1],
                          variable_axes=(TOKEN_AXIS,), command=command or "compress_minilm(...)")
