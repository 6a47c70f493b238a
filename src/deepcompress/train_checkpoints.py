"""Training checkpoints: written atomically at every epoch end by the training loop (train.py), read back
without unpickling anything (weights_only), and checked against the model, optimizer and settings they are
restored into, each problem one UserError naming the file."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import atomic
from .errors import UserError

if TYPE_CHECKING:
    from .train import TrainConfig


def _plain(model: nn.Module) -> nn.Module:
    # Checkpoints hold the bare model's keys, so data-parallel and single-process runs share them.
    return model.module if isinstance(model, DistributedDataParallel) else model


def save_checkpoint(path: Path, model, opt, cfg: TrainConfig, epoch: int, history: list[dict]) -> None:
    """Write the full training state atomically (a crash leaves the previous checkpoint intact)."""
    state = {
        "model": _plain(model).state_dict(),
        "optimizer": opt.state_dict(),
        "config": asdict(cfg),
        "epoch": epoch,
        "history": history,
        "rng": torch.get_rng_state(),
    }
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint without unpickling arbitrary objects."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} not found") from None
    except Exception as exc:  # torch raises several types for corrupt or hostile files
        # torch's messages run to many lines of advice; their first sentence says what went wrong
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise UserError(f"checkpoint {path} is unreadable or not a deepcompress checkpoint ({cause})") from None


def load_weights(model: nn.Module, path: Path, what: str) -> nn.Module:
    """Load trained weights into `model` from `path` (a state_dict saved with torch.save, or a training
    checkpoint holding one under "model"), read with weights_only=True; keys or shapes that do not fit
    `what` (the model's name) are one UserError naming them."""
    state = load_checkpoint(path)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"checkpoint {path} holds no state_dict (expected a dict of tensors, as "
                        f"torch.save(model.state_dict(), path) writes)")
    own = model.state_dict()
    problems = [f"{label} {_names(keys)}" for label, keys in (
        ("missing", [k for k in own if k not in state]),
        ("unexpected", [k for k in state if k not in own]),
        ("wrong shape", [f"{k} {list(state[k].shape)} (model {list(own[k].shape)})"
                         for k in own if k in state and state[k].shape != own[k].shape]),
    ) if keys]
    if problems:
        raise UserError(f"checkpoint {path} does not fit {what}: " + "; ".join(problems))
    model.load_state_dict(state)
    return model


def _names(keys: list[str], most: int = 6) -> str:
    return ", ".join(keys[:most]) + (f" and {len(keys) - most} more" if len(keys) > most else "")


def restore(path: Path, model, opt, cfg: TrainConfig) -> tuple[int, list[dict]]:
    """Load a training checkpoint into `model` and `opt` and the RNG; (epochs done, history). UserError
    naming the problem for a file that is not one of ours, has other settings or does not fit."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not {"model", "optimizer", "rng", "epoch", "history"} <= state.keys():
        raise UserError(f"checkpoint {path} is not a training checkpoint of deepcompress (keys missing); "
                        f"remove it to start over")
    if state.get("config") != asdict(cfg):
        raise UserError(f"checkpoint {path} was written with different settings {state.get('config')}; "
                        f"resume with the same options, or start a new output folder")
    try:
        _plain(model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"checkpoint {path} does not fit this model: {str(exc).splitlines()[0]}") from None
    torch.set_rng_state(state["rng"])
    return int(state["epoch"]), list(state["history"])
