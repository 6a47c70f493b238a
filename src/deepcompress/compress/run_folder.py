"""A compression run's output folder: what its stages were made from (checked before `resume` reuses
them), which files are stages or results, refusing to overwrite an earlier run, and tidying stages away
after a finished run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import atomic
from ..errors import UserError
from ..train import Objective
from .recipe import Recipe


IDENTITY_FILE = "stages.json"
STAGE_FILES = ("baseline-train.pt", "prune-*.pt", "quantize-train.pt", IDENTITY_FILE)


def run_identity(model: nn.Module, data, recipe: Recipe, meta: dict | None, objective: Objective) -> dict:
    """What the stages a run saves are made from, as flat keys: the [prune] and [quantize] settings, the
    objective's settings, the model (name, a hash of its starting weights) and the data (name, sizes, a hash
    of the labels and of every 97th training image). [encode] is left out: a changed [encode] re-encodes from
    the same stages."""
    identity: dict = {}
    for table in ("prune", "quantize"):
        _flatten(asdict(getattr(recipe, table)), table, identity)
    identity.update({f"objective {key}": value for key, value in objective.settings().items()})
    identity["model name"] = (meta or {}).get("model") or type(model).__name__
    identity["model starting weights (sha256)"] = weights_digest(model)
    identity["data name"] = getattr(data, "name", None)
    data = getattr(data, "data", data)  # batches over a Dataset: fingerprint the Dataset itself
    train_x, train_y = getattr(data, "train_x", None), getattr(data, "train_y", None)
    if train_x is not None and train_y is not None:
        identity["data training samples"] = len(train_y)
        identity["data test samples"] = len(getattr(data, "test_y", ()))
        digest = hashlib.sha256(_bytes(objective.data_targets(torch.as_tensor(train_y))))
        digest.update(_bytes(train_x[::97]))
        identity["data fingerprint (sha256)"] = digest.hexdigest()[:16]
    return json.loads(json.dumps(identity))  # as it reads back from the file


def weights_digest(model: nn.Module) -> str:
    """A short hash of the model's state_dict: names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(_bytes(tensor))
    return digest.hexdigest()[:16]


def _bytes(array) -> bytes:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array).tobytes()


def _flatten(table: dict, name: str, into: dict) -> None:
    for key, value in table.items():
        if isinstance(value, dict):
            _flatten(value, f"{name}.{key}", into)
        else:
            into[f"recipe [{name}] {key}"] = value


def check_resumable(out: Path, identity: dict, resume: bool, writes: bool = True) -> None:
    """Refuse to resume from stages in `out` made with another recipe, objective, model or data, naming the
    first setting that differs; then (`writes`) record `identity` as what this run's stages are made from."""
    path = out / IDENTITY_FILE
    if resume and path.exists():
        try:
            made_with = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: unreadable ({exc}); remove it to resume without the check") from None
        for key in [*identity, *(k for k in made_with if k not in identity)]:
            if made_with.get(key) != identity.get(key):
                older = (" (those stages were made before deepcompress recorded a user's loss function)"
                         if key.startswith("objective loss") and key not in made_with else "")
                raise UserError(f"--resume: the stages in {out} were made with {key} = "
                                f"{made_with.get(key, '(unset)')!r}, this run has {identity.get(key, '(unset)')!r}"
                                f"{older}; resume with the same recipe, objective, model and data, or use another "
                                f"--out")
    if writes:
        atomic.write_json(path, identity)


RESULT_FILES = ("model.dcz", "results.json", "report.md")


def earlier_run(out: Path) -> list[Path]:
    """The files in `out` that a compress_model run made there (stages and results), which a run without
    `resume` would replace. The baseline's training checkpoint is not one: the caller trains that."""
    made = [p for p in stage_files(out) if p.name != "baseline-train.pt"]
    return sorted(made + [out / name for name in RESULT_FILES if (out / name).exists()])


def check_fresh(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a run without `resume` into an `out` that holds an earlier one, naming a file of it; with
    `overwrite`, remove that run's files instead."""
    found = [] if resume else earlier_run(out)
    if found and not overwrite:
        raise UserError(f"{out} already holds a compression run ({found[0].name}); pass resume=True to "
                        f"continue it or overwrite=True to start over")
    for path in found:
        path.unlink(missing_ok=True)


def stage_files(out: Path) -> list[Path]:
    """The files in `out` that hold a compression run's stages (what `resume` continues from)."""
    return sorted({p for pattern in STAGE_FILES for p in Path(out).glob(pattern)})


def tidy_stages(out: str | Path, keep: str = "resume") -> tuple[list[Path], list[Path]]:
    """After a finished run, remove stage files from `out`; returns (kept, removed).

    `keep` "resume" keeps what `resume` needs to re-encode without retraining (the baseline's checkpoint,
    the last pruning round, gradual pruning's and the fine-tuning's checkpoints, stages.json) and removes
    the earlier rounds and their training checkpoints; "all" removes nothing; "none" removes them all.
    """
    files = stage_files(Path(out))
    if keep == "all":
        return files, []
    rounds = [int(p.stem.split("-")[1]) for p in files if p.stem.split("-")[-1].isdigit()]
    needed = {"baseline-train.pt", "prune-gradual-train.pt", "quantize-train.pt", IDENTITY_FILE,
              *([f"prune-{max(rounds)}.pt"] if rounds else [])}
    removed = [p for p in files if keep == "none" or p.name not in needed]
    for p in removed:
        p.unlink(missing_ok=True)
    return [p for p in files if p not in removed], removed
