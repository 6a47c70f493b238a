"""pruning: test error against the fraction of weights pruned, without retraining, with one retraining, and
iteratively; L1 against L2 regularisation (the talk's "Retrain to recover accuracy" figure, Han et al. 2015
Fig. 5); and per-layer sensitivity curves (Fig. 6)."""

from __future__ import annotations

import copy
from dataclasses import replace

from ..compress import L1Penalty, Masks
from ..compress.sensitivity import DEFAULT_GRID, sensitivity
from ..models import build_model
from . import steps
from .common import pct, pyplot

TITLE = "Pruning: retrain to recover accuracy, L1 against L2, per-layer sensitivity"
MODEL = "lenet-300-100"
GRID = {True: (0.0, 0.5, 0.9), False: (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98)}
SENSITIVITY_GRID = {True: (0.0, 0.5, 0.9), False: DEFAULT_GRID}
RETRAIN_EPOCHS = {True: 1, False: 2}
L1_STRENGTH = 1e-4  # the recipe's L2 weight decay, as an L1 coefficient
NO_LOSS_POINTS = 0.2
CHECK_AT = 0.9  # the fraction pruned at which the claims compare the curves


def l1_baseline(bench):
    """The model trained with an L1 penalty instead of weight decay (same recipe otherwise)."""
    cfg = replace(bench.train_config(MODEL), weight_decay=0.0)
    return bench.variant(f"{MODEL}-l1", lambda: build_model(MODEL), "mnist", cfg,
                         lambda net: (L1Penalty(Masks(net), L1_STRENGTH),))


def curve(bench, base, grid, retrain_epochs: int, l1: bool, iterative: bool = False) -> list[float]:
    """Test error at each fraction pruned of `base` (per layer, smallest magnitudes first), after
    `retrain_epochs` of retraining (L1 penalty instead of weight decay when `l1`); `iterative` carries the
    retrained model from one fraction to the next."""
    errors, model, masks = [], None, None
    for s in grid:
        if not iterative or model is None:
            model, masks = copy.deepcopy(base), None
        masks = steps.prune(model, s, masks)
        hooks = (L1Penalty(masks, L1_STRENGTH),) if l1 else ()
        if l1 and retrain_epochs:
            cfg = replace(steps.recipe(MODEL).prune.retrain, epochs=retrain_epochs, weight_decay=0.0)
            errors.append(bench.fit(model, "mnist", cfg, hooks=(masks, *hooks)))
        else:
            errors.append(steps.retrain(bench, MODEL, model, masks, retrain_epochs))
    return errors


def run(bench, study) -> None:
    """The five curves, the sensitivity curves of both LeNets, their figures and the claims."""
    grid, epochs = GRID[bench.quick], RETRAIN_EPOCHS[bench.quick]
    l2, l1 = bench.dense(MODEL), l1_baseline(bench)
    curves = {
        "L2, no retraining": curve(bench, l2, grid, 0, False),
        "L1, no retraining": curve(bench, l1, grid, 0, True),
        "L2, one retraining": curve(bench, l2, grid, epochs, False),
        "L1, one retraining": curve(bench, l1, grid, epochs, True),
        "L2, iterative prune + retrain": curve(bench, l2, grid, epochs, False, iterative=True),
    }
    study.data.update(grid=list(grid), curves=curves, dense_error=bench.error(l2), dense_error_l1=bench.error(l1))
    study.table(f"{MODEL} (MNIST) test error by fraction of weights pruned ({epochs} retraining epoch(s) per point)",
                ["fraction pruned", *curves], [[pct(s, 0), *(pct(c[i]) for c in curves.values())]
                                               for i, s in enumerate(grid)])
    # LeNet-5's unpruned baseline (quick mode: the fixture's pruned weights, to save its training)
    x, y, sgrid = bench.data().test_x, bench.data().test_y, SENSITIVITY_GRID[bench.quick]
    sens = {MODEL: sensitivity(l2, x, y, sgrid), "lenet-5": sensitivity(bench.baseline("lenet-5"), x, y, sgrid)}
    study.data["sensitivity"] = sens
    for m, c in sens.items():
        study.table(f"{m}: test error with one layer pruned (no retraining)",
                    ["fraction pruned", *c], [[pct(s, 0), *(pct(c[n][i][1]) for n in c)]
                                              for i, (s, _) in enumerate(next(iter(c.values())))])
    _plot_curves(study, grid, curves)
    _plot_sensitivity(study, sens)
    _claims(study, grid, curves, sens, epochs)


def _plot_curves(study, grid, curves) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (label, errs), style in zip(curves.items(), ("--", "--", "-", "-", "-")):
        ax.plot([100 * s for s in grid], [100 * e for e in errs], style, marker="o", label=label)
    ax.set_xlabel("parameters pruned away (%)")
    ax.set_ylabel("test error (%)")
    ax.set_yscale("log")
    ax.set_title(f"{MODEL} on MNIST: retrain to recover accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    study.figure(fig, "pruning_curves.png", "Test error against the fraction of weights pruned (every layer alike): "
                 "without retraining, after one retraining, and pruning iteratively; L1 against L2 regularisation.")


def _plot_sensitivity(study, sens) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sens), figsize=(11, 3.8), sharey=True)
    for ax, (model, c) in zip(axes, sens.items()):
        for name, points in c.items():
            ax.plot([100 * s for s, _ in points], [100 * e for _, e in points], marker="o", label=name)
        ax.set_title(model)
        ax.set_xlabel("parameters of one layer pruned away (%)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test error (%)")
    study.figure(fig, "sensitivity.png", "Pruning sensitivity: one layer pruned at a time, no retraining.")


def _claims(study, grid, curves, sens, epochs) -> None:
    i = grid.index(CHECK_AT)
    dense = curves["L2, no retraining"][0]
    at = {k: v[i] for k, v in curves.items()}
    best = min(at["L2, one retraining"], at["L2, iterative prune + retrain"])
    study.claim(f"with retraining, pruning {pct(CHECK_AT, 0)} of the weights costs no accuracy",
                "retrain to recover accuracy: no loss at ~90% pruned (AlexNet; 12x fewer LeNet-300-100 weights)",
                f"dense {pct(dense)}, retrained {pct(best)} at {pct(CHECK_AT, 0)} pruned; "
                f"without retraining {pct(at['L2, no retraining'])}",
                best - dense <= NO_LOSS_POINTS / 100 and at["L2, no retraining"] > best,
                f"agrees when the better retrained curve is within {NO_LOSS_POINTS} points of dense and no "
                f"retraining is worse ({epochs} retraining epoch(s) per point)")
    last = len(grid) - 1
    it, one = curves["L2, iterative prune + retrain"][last], curves["L2, one retraining"][last]
    study.claim(f"iterative pruning beats one-shot pruning at {pct(grid[last], 0)} pruned",
                "iterative prune and retrain prunes furthest without loss (Han et al. 2015 Fig. 5)",
                f"iterative {pct(it)}, one-shot {pct(one)}", it <= one,
                "same retraining per step; the iterative model has been retrained at every earlier fraction too")
    l1n, l2n = at["L1, no retraining"], at["L2, no retraining"]
    l1r, l2r = at["L1, one retraining"], at["L2, one retraining"]
    study.claim("L1 regularisation is better without retraining, L2 with retraining",
                "L1 better than L2 directly after pruning, L2 better after retraining (Han et al. 2015 Fig. 5)",
                f"at {pct(CHECK_AT, 0)}: no retraining L1 {pct(l1n)} / L2 {pct(l2n)}; retrained L1 {pct(l1r)} / L2 {pct(l2r)}",
                l1n < l2n and l2r <= l1r,
                f"L1 coefficient {L1_STRENGTH:g} against the recipe's weight decay; the L1 baseline itself has error "
                f"{pct(curves['L1, no retraining'][0])}")
    c = sens["lenet-5"]
    k = min(range(len(c["conv1"])), key=lambda j: abs(c["conv1"][j][0] - CHECK_AT))
    worst = max(c, key=lambda n: c[n][k][1])
    study.claim("the first convolutional layer is the most sensitive to pruning",
                "conv1 most sensitive, fully connected layers least (Han et al. 2015 Fig. 6, AlexNet)",
                "lenet-5 at " + pct(c["conv1"][k][0], 0) + " of one layer pruned: "
                + ", ".join(f"{n} {pct(c[n][k][1])}" for n in c), worst == "conv1",
                "one layer pruned at a time on the test set; conv1 has only 500 weights, each one matters")
