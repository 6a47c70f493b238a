"""Deep Compression end to end: baseline -> prune + retrain -> quantize + fine-tune -> encode -> the
file's own test error. Every stage saves its result in the output folder, so a rerun with `resume`
skips finished stages and continues an interrupted retraining from its checkpoint.

A `Team` says which processes share the run: by default this one alone. Data-parallel runs
(deepcompress.parallel.compression.RankTeam) run the same pipeline on every rank; training goes through
DDP, masks and codebooks are rank 0's everywhere, and only rank 0 prints and writes files.

`PipelineHooks` are the run's extension points: extra training hooks per training run and a call after
each stage, for progress reporting, tests that interrupt a run, or measurements between stages."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .. import atomic
from ..data import DATASETS
from ..errors import UserError
from ..batches import Batches, as_batches
from ..train import BatchShard, Objective, TrainConfig, TrainHook, load_checkpoint, objective_of, score, train
from .export import architecture_ops, example_of, load_into, write_model
from .fold import apply_torch_prune, fold_batchnorm
from .report import results_record, write_report
from .prune import (GradualPruning, L1Penalty, Masks, StdThreshold, TargetSparsity, matrix_layers,
                    polynomial_sparsity, prunable_layers)
from .quantize import SharedWeights
from .slots import check_ties
from .recipe import PruneStage, QuantizeStage, Recipe, as_recipe
from .run_folder import check_fresh, check_resumable, run_identity


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


class PipelineHooks:
    """Extension points of a compression run (pass one to `compress_model`); the default methods do nothing.

    Example, stopping a run in the second epoch of its gradual pruning:

        class Stop(PipelineHooks):
            def training(self, name):
                return [StopInEpoch2()] if name == "prune-gradual" else []
    """

    def training(self, name: str) -> list[TrainHook]:
        """Extra hooks for the training run `name` ("baseline", "prune-1", ..., "prune-gradual",
        "quantize"); they run after the stage's own hooks (masks, shared weights)."""
        return []

    def after_stage(self, name: str, model: nn.Module, result) -> None:
        """Called when stage `name` has finished: "prune" (result: the Masks), "quantize" (the
        SharedWeights), "encode" (the path of the written file; the writing process only)."""


@dataclass
class Run:
    """Where a compression run writes, who shares it, and what it has measured so far."""

    out: Path
    data: Batches
    resume: bool = False
    progress: bool = True
    team: Team = field(default_factory=Team)
    hooks: PipelineHooks = field(default_factory=PipelineHooks)
    log: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    objective: Objective = field(default_factory=Objective)

    def __post_init__(self):
        self.data = as_batches(self.data)

    def note(self, stage_name: str, model: nn.Module, **extra) -> float:
        """Measure the model's test score (error or loss, see train.Objective) after a stage, print it and keep
        it in the log (writer only)."""
        if not self.team.writes:
            return float("nan")
        value = score(model, self.data, self.objective)
        self.log.append({"stage": stage_name, self.objective.key: value, **extra})
        tqdm.write(f"[{stage_name}] {self.objective.label(value)}" + "".join(f"  {k} {v}" for k, v in extra.items()))
        sys.stdout.flush()  # a log file shows each stage when it ends, not all of them at exit
        return value

    def fit(self, model, cfg: TrainConfig, name: str, hooks=()) -> None:
        """Train with the stage's settings (batch_size is the global batch), checkpointing to OUT/NAME-train.pt."""
        hooks = [*hooks, *self.hooks.training(name)]
        train(self.team.wrap(model), self.data, cfg,
              checkpoint=self.out / f"{name}-train.pt", resume=self.resume, hooks=hooks,
              progress=self.progress, verbose=self.progress, shard=self.team.shard(), label=name,
              objective=self.objective)

    def save(self, name: str, state: dict) -> None:
        """Write OUT/NAME atomically (writer only)."""
        if self.team.writes:
            with atomic.atomic_path(self.out / name) as tmp:
                torch.save(state, tmp)


def _load(path: Path) -> dict | None:
    """A saved stage, or None where there is none; a corrupt one is a UserError naming the file."""
    if not path.exists():
        return None
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {path} is not a stage of a compression run; remove it to redo that stage")
    return state


def _finished_round(model: nn.Module, masks: Masks, run: Run, rounds: int) -> int:
    """With `resume`: load the last finished pruning round saved in OUT (prune-I.pt) and return I; else 0."""
    for i in range(rounds, 0, -1) if run.resume else ():
        saved = _load(run.out / f"prune-{i}.pt")
        if saved is not None:
            try:
                model.load_state_dict(saved["model"])
                masks.masks = saved["masks"]
            except (RuntimeError, KeyError) as exc:
                raise UserError(f"checkpoint {run.out / f'prune-{i}.pt'} does not fit this model: "
                                f"{str(exc).splitlines()[0]}") from None
            return i
    return 0


def _round_rules(cfg: PruneStage, i: int, rounds: int) -> dict:
    """Threshold rules of round i (1-based): the kept fraction falls geometrically to the target."""
    if cfg.rule == "std":
        return {n: StdThreshold(q) for n, q in cfg.layers.items()}
    return {n: TargetSparsity(1 - (1 - s) ** (i / rounds)) for n, s in cfg.layers.items()}


def prune_stage(model: nn.Module, cfg: PruneStage, run: Run) -> Masks:
    """Iterative (or gradual) magnitude pruning with retraining; returns the final masks."""
    masks = Masks(model)  # every layer is stored and quantized, pruned or not
    masks.agree = run.team.share  # every rank keeps rank 0's masks
    if cfg.schedule == "gradual":
        return _gradual(model, cfg, masks, run)
    rounds = cfg.iterations
    for i in range(_finished_round(model, masks, run, rounds) + 1, rounds + 1):
        if cfg.rule == "global":
            masks.prune_global(1 - (1 - cfg.sparsity) ** (i / rounds))
        else:
            masks.prune(_round_rules(cfg, i, rounds))
        run.note(f"prune {i}/{rounds} before retraining", model, kept=masks.kept())
        hooks = [masks] + ([L1Penalty(masks, cfg.l1)] if cfg.l1 else [])
        run.fit(model, cfg.retrain, f"prune-{i}", hooks)
        run.save(f"prune-{i}.pt", {"model": model.state_dict(), "masks": masks.masks})
        run.note(f"prune {i}/{rounds} retrained", model, density=_fmt(masks.density()))
    return masks


def _gradual(model, cfg: PruneStage, masks, run) -> Masks:
    retrain = cfg.retrain
    per_epoch = run.data.steps_per_epoch(retrain.batch_size)
    final = dict(cfg.layers)
    hook = GradualPruning(masks, final, total_steps=int(0.8 * retrain.epochs * per_epoch), every=cfg.every)
    saved = _load(run.out / "prune-gradual-train.pt") if run.resume else None
    if saved is not None:  # continue the schedule where the interrupted run left it
        model.load_state_dict(saved["model"])
        masks.masks = {n: m.weight.detach() != 0 for n, m in masks.modules.items()}
        hook.step = int(saved["epoch"]) * per_epoch
    run.fit(model, retrain, "prune-gradual", [hook])
    masks.prune({n: TargetSparsity(polynomial_sparsity(1, 1, s)) for n, s in final.items()})
    run.note("gradual pruning", model, density=_fmt(masks.density()))
    return masks


def _fmt(density: dict) -> dict:
    return {n: round(d, 4) for n, d in density.items()}


def layer_kinds(masks: Masks) -> dict[str, str]:
    """"conv" or "fc" per masked layer: which of a stage's conv_* / fc_* settings it takes."""
    return {n: "conv" if isinstance(m, (nn.Conv1d, nn.Conv2d)) else "fc" for n, m in masks.modules.items()}


def quantize_stage(model: nn.Module, masks: Masks, cfg: QuantizeStage, run: Run) -> SharedWeights:
    """k-means weight sharing per layer, then centroid fine-tuning with masks kept."""
    bits = cfg.bits(layer_kinds(masks))
    shared = SharedWeights(model, masks, bits, init=cfg.init, method=cfg.method, iters=cfg.iters)
    shared.adopt(run.team.share(shared.codes))  # every rank fine-tunes rank 0's codebooks and assignments
    run.note("quantized", model, bits=bits)
    finetune = cfg.finetune
    if finetune.epochs > 0:
        run.fit(model, finetune, "quantize", [masks, shared])
        shared.after_step(model)
        run.note("centroids fine-tuned", model)
    return shared


def compress_model(model: nn.Module, data, recipe: Recipe | dict, out: str | Path, *, meta: dict | None = None,
                   resume: bool = False, progress: bool = True, team: Team | None = None,
                   hooks: PipelineHooks | None = None, example_input: torch.Tensor | None = None,
                   weights_only: bool = False, command: str | None = None,
                   objective: Objective | None = None, loss=None, metric: str | None = None,
                   overwrite: bool = False, variable_axes: tuple = ()) -> dict | None:
    """Prune, quantize and encode a trained `model`; write OUT/model.dcz and return what was measured.

    `data` is a deepcompress.data.Dataset, or your own (train_loader, test_loader) pair of torch
    DataLoaders yielding (inputs, targets) batches (a mapping {"train": ..., "test": ..., "name": ...} also
    works); with DataLoaders the recipe's batch_size is not used, the loaders' own batching is.
    `loss(outputs, targets)` is what retraining minimises (default cross-entropy); `metric` is how each
    stage is scored on the test data: "error" (top-1, the default with cross-entropy) or "loss" (mean loss
    per sample, the default with any other loss); the record then has test_loss instead of test_error.
    Instead of loss/metric, `objective` (deepcompress.train.Objective) can set both.

    `recipe` is a typed Recipe or a dict of [prune], [quantize] and optional [encode] tables (see the
    built-in recipes and deepcompress.compress.recipe); it is checked whole, against the model's layers
    too, before any work starts, and `data.name` picks its data-set overrides. [encode] `values` ("f32",
    the default, or "f16") is how codebooks and biases are stored. The returned dict has the per-stage
    test errors, the file path and the file's own test error. With a data-parallel `team`, call it on
    every rank: the rank that writes returns the dict, the others None. `hooks` (PipelineHooks) add
    training hooks and calls after each stage. A distillation objective
    (deepcompress.minilm_distill.CosineDistill) makes data.train_y / test_y a teacher's outputs instead of labels.

    The file holds the model's forward pass, captured with torch.fx on `example_input` (a batch of one or
    more real inputs; default: zeros of meta["input_shape"], else the first test sample); a model the
    file cannot describe is refused before any work, naming the module, unless `weights_only`.
    `variable_axes` are axes of `example_input` (the batch is 0) whose length may differ when the file is
    run, e.g. (1,) for token ids (N, T): the file then runs at any sequence length. BatchNorm
    after a convolution or linear layer is folded into it before quantization; torch.nn.utils.prune
    masks are applied first. OUT/report.md and OUT/results.json describe the run (`command`: how it was
    started, for the record); the returned dict holds that record under "record".

    With `resume`, finished stages saved in OUT are reused, after checking that they were made with the
    same [prune] and [quantize] settings, model (and starting weights) and data (OUT/stages.json; a
    difference is a UserError naming the setting). See `run_folder.tidy_stages` for removing them afterwards.
    Without `resume`, an OUT that already holds a run's stages or results (see `run_folder.earlier_run`) is refused
    before any work, unless `overwrite`, which removes them first.

    Example:
        compress_model(model, data, {"prune": {"layers": {"ip1": 0.9}}, "quantize": {"fc_bits": 4}}, "out/")
    """
    if objective is not None and (loss is not None or metric is not None):
        raise UserError("compress_model: give either objective or loss/metric, not both")
    obj = objective or objective_of(loss, metric)
    dataset = data.get("name") if isinstance(data, Mapping) else getattr(data, "name", None)
    apply_torch_prune(model)
    cfg = checked_recipe(model, recipe, dataset, weights_only)  # before the data is read: costs nothing
    data = as_batches(data)
    example = None if weights_only else example_of(meta or {}, _example(meta or {}, data, example_input))
    if example is not None:
        architecture_ops(model, example, variable_axes)  # what the file cannot describe fails here, first
    run = Run(Path(out), data, resume, progress, team or Team(), hooks or PipelineHooks(), objective=obj)
    run.out.mkdir(parents=True, exist_ok=True)
    if run.team.writes:  # the other ranks would see the stages.json the writer is about to record
        check_fresh(run.out, resume, overwrite)
    check_resumable(run.out, run_identity(model, data, cfg, meta, obj), resume, run.team.writes)
    t0 = time.perf_counter()
    run.note("baseline", model)
    masks = prune_stage(model, cfg.prune, run)
    run.hooks.after_stage("prune", model, masks)
    run.timings["prune_s"] = time.perf_counter() - t0
    folded = fold_batchnorm(model, example)  # the file holds folded weights, so share (quantize) those
    if folded:
        run.note("batchnorm folded", model, layers=[layer for layer, _ in folded])
    shared = quantize_stage(model, masks, cfg.quantize, run)
    run.hooks.after_stage("quantize", model, shared)
    run.timings["quantize_s"] = time.perf_counter() - t0 - run.timings["prune_s"]
    if not run.team.writes:
        return None
    outcome = _encode(model, masks, shared, cfg, run, meta, t0, example, tuple(variable_axes))
    name = (meta or {}).get("model") or type(model).__name__
    outcome["record"] = results_record(name, dataset or "custom", outcome, command or "compress_model(...)")
    outcome["record"]["torch_threads"] = torch.get_num_threads()  # results are exact for a thread count
    write_report(run.out, outcome["record"])
    return outcome


def checked_recipe(model: nn.Module, recipe: Recipe | dict, dataset: str | None,
                   weights_only: bool = False) -> Recipe:
    """`recipe` checked for compressing `model` (it has [prune] and [quantize], names only the model's
    layers, and the model has only layers the file can store, `weights_only` or with its forward pass), as
    data set `dataset` sees it."""
    _check_supported(model, weights_only)
    tied = check_ties(model)
    known = DATASETS if dataset is None else (*DATASETS, dataset)
    recipe = as_recipe(recipe, datasets=known)
    recipe.require(("prune", "quantize"), "compressing needs [prune] and [quantize] ([encode] is optional)")
    recipe.check_layers(prunable_layers(model), tied=tied)
    return recipe.for_dataset(dataset)


def _encode(model, masks: Masks, shared: SharedWeights, cfg: Recipe, run: Run, meta, t0: float,
            example: torch.Tensor | None, variable_axes: tuple = ()) -> dict:
    """Write OUT/model.dcz, measure the file's own test error; the run's outcome."""
    gap_bits = cfg.encode.gap_bits(layer_kinds(masks))
    values = cfg.encode.values
    path = run.out / "model.dcz"
    nbytes = write_model(path, model, shared, gap_bits, shared.bits(), meta or {}, values,
                         example_input=example, weights_only=example is None, variable_axes=variable_axes)
    run.hooks.after_stage("encode", model, path)
    file_model = _reloaded(model, path) if example is None else checked_file_model(path, run.data.sample(8))
    file_score = run.note("from file", file_model, bytes=nbytes)
    run.timings["total_s"] = time.perf_counter() - t0
    return {"file": str(path), "file_bytes": nbytes, run.objective.key: file_score, "metric": run.objective.metric,
            "stages": run.log,
            "bits": shared.bits(), "gap_bits": gap_bits, "values": values, "timings": run.timings}


def _example(meta: dict, data: Batches, given: torch.Tensor | None) -> torch.Tensor | None:
    """The input that fixes the file's input shape: the one given, else None when meta has an
    input_shape, else the first real test sample."""
    if given is not None or meta.get("input_shape") is not None:
        return given
    return data.sample(1)


def checked_file_model(path: Path, sample: torch.Tensor) -> nn.Module:
    """The file's model in PyTorch, built from the file alone (deepcompress.decompress), after checking
    that the CPU runtime gives it the same outputs on `sample`: the two readers of the forward pass agree."""
    from ..runtime import load
    from ..to_torch import decompress

    torch_model = decompress(path)
    with torch.no_grad():
        expected = torch_model(sample).numpy()
    got = load(path)(sample.numpy())
    err = float(np.linalg.norm(got - expected) / max(float(np.linalg.norm(expected)), 1e-30))
    if not err <= 1e-4:
        raise UserError(f"{path}: the CPU runtime and PyTorch disagree on the file's forward pass (relative "
                        f"error {err:.2e}); this is a deepcompress bug, please report it with the file")
    return torch_model


STORED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def _check_supported(model: nn.Module, weights_only: bool = False) -> None:
    """Refuse models with learned parameters in modules the file cannot store, or with floating-point
    parameters or buffers other than float32 (what training, weight sharing and the file use), naming them.
    A parameter a module reads itself is stored only with the forward pass, whose `parameter` op says
    what it is (a weights-only file would leave a reader to take it for a matrix)."""
    other = [(n, t.dtype) for n, t in (*model.named_parameters(), *model.named_buffers())
             if t.is_floating_point() and t.dtype != torch.float32]
    if other:
        name, dtype = other[0]
        raise UserError(f"{name}: {str(dtype).removeprefix('torch.')} ({len(other)} parameter(s) or buffer(s) "
                        f"not float32); deepcompress trains, shares and stores float32 weights: call "
                        f"model.float() first and give it float32 inputs")
    stored = {id(p) for m in model.modules() if isinstance(m, STORED) for p in m.parameters()}
    stored |= {id(p) for slot in (matrix_layers if weights_only else prunable_layers)(model).values()
               for p in slot.parameters()}
    owners = {name: m for name, m in model.named_modules()
              if any(id(p) not in stored for p in m.parameters(recurse=False))}
    if owners:
        listed = ", ".join(f"{n or 'the model'} ({type(m).__name__})" for n, m in list(owners.items())[:5])
        raise UserError(f"{listed}: parameters the .dcz file cannot store (it stores Linear, Conv2d, Embedding, "
                        f"LSTM, GRU and MultiheadAttention weights, BatchNorm and LayerNorm, and, with the "
                        f"forward pass, parameters a module reads itself with + - * /)")


def _reloaded(model: nn.Module, path: Path) -> nn.Module:
    import copy

    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for layer in prunable_layers(fresh).values():  # what the file stores comes from the file alone
            for p in layer.parameters():
                p.zero_()
    load_into(fresh, path)
    return fresh
