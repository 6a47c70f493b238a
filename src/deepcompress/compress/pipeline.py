"""Deep Compression end to end: baseline -> prune + retrain -> quantize + fine-tune -> encode -> the
file's own test error. Every stage saves its result in the output folder, so a rerun with `resume`
skips finished stages and continues an interrupted retraining from its checkpoint.

A `Team` says which processes share the run: by default this one alone. Data-parallel runs
(deepcompress.parallel.compression.RankTeam) run the same pipeline on every rank; training goes through
DDP, masks and codebooks are rank 0's everywhere, and only rank 0 prints and writes files."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .. import atomic
from ..errors import UserError
from ..recipes import stage
from ..train import BatchShard, TrainConfig, evaluate, train
from .export import check_values, load_into, write_model
from .prune import GradualPruning, L1Penalty, Masks, StdThreshold, TargetSparsity, polynomial_sparsity
from .quantize import SharedWeights

PRUNE_RULES = ("sparsity", "std", "global")


class Team:
    """The processes that share one compression run; this base class is the one process doing it all.

    A data-parallel subclass makes each process a rank: `wrap` and `shard` route training through DDP
    on the rank's share of every batch, `share` hands every rank rank 0's value, and only the rank whose
    `writes` is true prints and writes files.
    """

    writes = True

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train (here the model itself)."""
        return model

    def shard(self) -> BatchShard | None:
        """This process's part of each batch (None: all of it)."""
        return None

    def share(self, value):
        """`value` as the run's deciding process computed it (here: this process's own)."""
        return value


@dataclass
class Run:
    """Where a compression run writes, who shares it, and what it has measured so far."""

    out: Path
    data: object
    resume: bool = False
    progress: bool = True
    team: Team = field(default_factory=Team)
    log: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def note(self, stage_name: str, model: nn.Module, **extra) -> float:
        """Measure the model's test error after a stage, print it and keep it in the log (writer only)."""
        if not self.team.writes:
            return float("nan")
        err = evaluate(model, self.data.test_x, self.data.test_y)
        self.log.append({"stage": stage_name, "test_error": err, **extra})
        tqdm.write(f"[{stage_name}] test error {100 * err:.2f}%"
                   + "".join(f"  {k} {v}" for k, v in extra.items()))
        return err

    def fit(self, model, cfg: dict, name: str, hooks=()) -> None:
        """Train with the stage's settings (batch_size is the global batch), checkpointing to OUT/NAME-train.pt."""
        train(self.team.wrap(model), self.data, TrainConfig.from_dict(cfg),
              checkpoint=self.out / f"{name}-train.pt", resume=self.resume, hooks=hooks,
              progress=self.progress, verbose=self.progress, shard=self.team.shard())

    def save(self, name: str, state: dict) -> None:
        """Write OUT/NAME atomically (writer only)."""
        if self.team.writes:
            with atomic.atomic_path(self.out / name) as tmp:
                torch.save(state, tmp)


def _load(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None


def _round_rules(cfg: dict, masks: Masks, i: int, rounds: int) -> dict:
    """Threshold rules of round i (1-based): the kept fraction falls geometrically to the target."""
    layers = cfg.get("layers", {})
    unknown = sorted(set(layers) - set(masks.modules))
    if unknown:
        raise UserError(f"recipe [prune.layers] names {', '.join(unknown)}; the model has {', '.join(masks.modules)}")
    if cfg.get("rule", "sparsity") == "std":
        return {n: StdThreshold(q) for n, q in layers.items()}
    return {n: TargetSparsity(1 - (1 - s) ** (i / rounds)) for n, s in layers.items()}


def prune_stage(model: nn.Module, cfg: dict, run: Run) -> Masks:
    """Iterative (or gradual) magnitude pruning with retraining; returns the final masks."""
    rule = cfg.get("rule", "sparsity")
    if rule not in PRUNE_RULES:
        raise UserError(f"recipe [prune] rule {rule!r}: expected one of {', '.join(PRUNE_RULES)}")
    masks = Masks(model)  # every layer is stored and quantized, pruned or not
    masks.agree = run.team.share  # every rank keeps rank 0's masks
    if cfg.get("schedule", "iterative") == "gradual":
        return _gradual(model, cfg, masks, run)
    rounds = int(cfg.get("iterations", 1))
    for i in range(1, rounds + 1):
        saved = _load(run.out / f"prune-{i}.pt") if run.resume else None
        if saved is not None:
            model.load_state_dict(saved["model"])
            masks.masks = saved["masks"]
            continue
        if rule == "global":
            masks.prune_global(1 - (1 - cfg["sparsity"]) ** (i / rounds))
        else:
            masks.prune(_round_rules(cfg, masks, i, rounds))
        run.note(f"prune {i}/{rounds} before retraining", model, kept=masks.kept())
        hooks = [masks] + ([L1Penalty(masks, cfg["l1"])] if cfg.get("l1") else [])
        run.fit(model, cfg.get("retrain", {}), f"prune-{i}", hooks)
        run.save(f"prune-{i}.pt", {"model": model.state_dict(), "masks": masks.masks})
        run.note(f"prune {i}/{rounds} retrained", model, density=_fmt(masks.density()))
    return masks


def _gradual(model, cfg, masks, run) -> Masks:
    retrain = TrainConfig.from_dict(cfg.get("retrain", {}))
    per_epoch = -(-len(run.data.train_y) // retrain.batch_size)
    final = {n: s for n, s in cfg["layers"].items()}
    hook = GradualPruning(masks, final, total_steps=int(0.8 * retrain.epochs * per_epoch),
                          every=int(cfg.get("every", 100)))
    saved = _load(run.out / "prune-gradual-train.pt") if run.resume else None
    if saved is not None:  # continue the schedule where the interrupted run left it
        model.load_state_dict(saved["model"])
        masks.masks = {n: m.weight.detach() != 0 for n, m in masks.modules.items()}
        hook.step = int(saved["epoch"]) * per_epoch
    run.fit(model, cfg.get("retrain", {}), "prune-gradual", [hook])
    masks.prune({n: TargetSparsity(polynomial_sparsity(1, 1, s)) for n, s in final.items()})
    run.note("gradual pruning", model, density=_fmt(masks.density()))
    return masks


def _fmt(density: dict) -> dict:
    return {n: round(d, 4) for n, d in density.items()}


def layer_settings(cfg: dict, masks: Masks, key: str, default_fc, default_conv) -> dict[str, int | str]:
    """Per-layer integer setting ("auto" allowed): [STAGE.layers] override, else fc_KEY / conv_KEY, else
    the default."""
    out = {}
    for name, module in masks.modules.items():
        kind = "conv" if isinstance(module, nn.Conv2d) else "fc"
        base = cfg.get(f"{kind}_{key}", default_conv if kind == "conv" else default_fc)
        value = cfg.get("layers", {}).get(name, base)
        out[name] = value if value == "auto" else int(value)
    return out


def quantize_stage(model: nn.Module, masks: Masks, cfg: dict, run: Run) -> SharedWeights:
    """k-means weight sharing per layer, then centroid fine-tuning with masks kept."""
    bits = layer_settings(cfg, masks, "bits", 5, 8)
    shared = SharedWeights(model, masks, bits, init=cfg.get("init", "linear"), method=cfg.get("method", "kmeans"),
                           iters=int(cfg.get("iters", 100)))
    shared.adopt(run.team.share(shared.codes))  # every rank fine-tunes rank 0's codebooks and assignments
    run.note("quantized", model, bits=bits)
    finetune = cfg.get("finetune", {})
    if finetune.get("epochs", 0) > 0:
        run.fit(model, finetune, "quantize", [masks, shared])
        shared.after_step(model)
        run.note("centroids fine-tuned", model)
    return shared


def compress_model(model: nn.Module, data, recipe: dict, out: str | Path, *, meta: dict | None = None,
                   resume: bool = False, progress: bool = True, team: Team | None = None) -> dict | None:
    """Prune, quantize and encode a trained `model`; write OUT/model.dcz and return what was measured.

    `recipe` holds [prune], [quantize] and [encode] tables (see the built-in recipes); [encode] `values`
    ("f32", the default, or "f16") is how codebooks and biases are stored. The returned
    dict has the per-stage test errors, the file path and the file's own test error. With a
    data-parallel `team`, call it on every rank: the rank that writes returns the dict, the others None.
    """
    _check_supported(model)
    dataset = getattr(data, "name", None)
    values = check_values(stage(recipe, "encode", dataset).get("values", "f32"))  # a typo fails before training
    run = Run(Path(out), data, resume, progress, team or Team())
    run.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run.note("baseline", model)
    masks = prune_stage(model, stage(recipe, "prune", dataset), run)
    run.timings["prune_s"] = time.perf_counter() - t0
    qcfg = stage(recipe, "quantize", dataset)
    shared = quantize_stage(model, masks, qcfg, run)
    run.timings["quantize_s"] = time.perf_counter() - t0 - run.timings["prune_s"]
    if not run.team.writes:
        return None
    ecfg = stage(recipe, "encode", dataset)
    gap_bits = layer_settings(ecfg, masks, "gap_bits", "auto", "auto")
    path = run.out / "model.dcz"
    nbytes = write_model(path, model, shared, gap_bits, shared.bits(), meta or {}, values,
                         example_input=_example(meta or {}, data))
    file_model = _reloaded(model, path)
    file_error = run.note("from file", file_model, bytes=nbytes)
    run.timings["total_s"] = time.perf_counter() - t0
    return {"file": str(path), "file_bytes": nbytes, "test_error": file_error, "stages": run.log,
            "bits": shared.bits(), "gap_bits": gap_bits, "values": values, "timings": run.timings}


def _example(meta: dict, data) -> torch.Tensor | None:
    """The input that fixes the file's input shape: meta's input_shape when given, else a real test sample."""
    if meta.get("input_shape") is not None:
        return None
    return data.test_x[:1]


def _check_supported(model: nn.Module) -> None:
    """The file stores Linear and Conv2d layers only; refuse models with other learned parameters."""
    stored = {id(p) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) for p in m.parameters()}
    other = [n for n, p in model.named_parameters() if id(p) not in stored]
    if other:
        raise UserError(f"parameters {', '.join(other[:5])} belong to layers other than Linear/Conv2d, which "
                        f"the .dcz file cannot store; fold them into the adjacent layers first")


def _reloaded(model: nn.Module, path: Path) -> nn.Module:
    import copy

    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    load_into(fresh, path)
    return fresh
