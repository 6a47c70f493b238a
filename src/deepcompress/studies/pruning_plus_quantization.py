"""pruning-plus-quantization: test error against compression ratio for pruning only, quantization only and
both (Deep Compression Fig. 6, the talk's "Pruning + Trained Quantization"), with sizes from real .dcz files."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from ..compress import Masks
from ..format import file_size_breakdown
from . import steps
from .common import pct, pyplot

TITLE = "Pruning + trained quantization: error against compression ratio"
MODEL = "lenet-300-100"
SPARSITY = {True: (0.8, 0.9), False: (0.5, 0.7, 0.8, 0.9, 0.95, 0.97)}
QUANT_BITS = {True: (4, 2), False: (8, 6, 5, 4, 3, 2)}
BOTH_BITS = 5  # the recipe's fc bits for every pruned point, and more bits at EXTRA_AT
EXTRA = {True: (), False: (4, 3, 2)}
EXTRA_AT = 0.9
RETRAIN_EPOCHS, FINETUNE_EPOCHS = {True: 1, False: 3}, {True: 1, False: 1}
NO_LOSS_POINTS = 0.2
PAPER_RATIO = 40  # Deep Compression, LeNet-300-100: 40x, 1.64% -> 1.58%


def _shared_file(bench, model, masks, bits: int, tune: bool, folder: Path, name: str):
    """Share `model`'s weights at `bits`, fine-tune when `tune`, write FOLDER/NAME.dcz; (error, size report)."""
    shared = steps.quantize(model, masks, bits)
    err = steps.finetune(bench, MODEL, model, masks, shared, FINETUNE_EPOCHS[bench.quick] if tune else 0)
    path = folder / f"{name}.dcz"
    steps.write_dcz(path, MODEL, model, masks, shared)
    return err, file_size_breakdown(path)


def run(bench, study) -> None:
    """Prune (and retrain), quantize (and fine-tune), write each variant as a file; points, figure, claims."""
    dense = bench.dense(MODEL)
    dense_err = bench.error(dense)
    points = {"pruning only": [], "quantization only": [], "pruning + quantization": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for s in SPARSITY[bench.quick]:
            model = copy.deepcopy(dense)
            masks = steps.prune(model, s)
            err = steps.retrain(bench, MODEL, model, masks, RETRAIN_EPOCHS[bench.quick])
            for bits in (BOTH_BITS, *(EXTRA[bench.quick] if s == EXTRA_AT else ())):
                m = copy.deepcopy(model)
                m_masks = Masks(m)
                m_masks.masks = {n: masks.masks[n].clone() for n in masks.masks}
                q_err, report = _shared_file(bench, m, m_masks, bits, True, folder, f"p{s}-q{bits}")
                points["pruning + quantization"].append(_point(f"{pct(1 - s, 0)} kept, {bits} bits", q_err, report))
                if bits == BOTH_BITS:
                    points["pruning only"].append(_point(f"{pct(1 - s, 0)} kept, float32", err, report,
                                                         pruning_only(report, m_masks)))
        for bits in QUANT_BITS[bench.quick]:
            model = copy.deepcopy(dense)
            masks = Masks(model)
            q_err, report = _shared_file(bench, model, masks, bits, True, folder, f"q{bits}")
            points["quantization only"].append(_point(f"{bits} bits, dense", q_err, report))
    study.data.update(dense_error=dense_err, points=points)
    study.table(f"{MODEL} (MNIST): size and error of each variant (dense float32 error {pct(dense_err)})",
                ["method", "variant", "bytes", "compression ratio", "test error"],
                [[method, p["variant"], p["bytes"], f"{p['ratio']:.1f}x", pct(p["error"])]
                 for method, pts in points.items() for p in pts])
    _plot(study, points, dense_err)
    _claims(study, points, dense_err)


def pruning_only(report, masks) -> int:
    """Bytes of the pruned model stored with float32 values: the file's relative indices and headers, with
    its codebooks and codebook-index streams replaced by one float32 per stored weight."""
    stored = sum(int(m.sum()) for m in masks.masks.values())
    return report.total - sum(layer.index + layer.codebook for layer in report.layers) + 4 * stored


def _point(variant: str, error: float, report, nbytes: int | None = None) -> dict:
    nbytes = report.total if nbytes is None else nbytes
    return {"variant": variant, "error": error, "bytes": nbytes, "ratio": report.dense_fp32 / nbytes}


def _plot(study, points, dense_err) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (label, pts), marker in zip(points.items(), ("s", "^", "o")):
        pts = sorted(pts, key=lambda p: p["ratio"])
        ax.plot([p["ratio"] for p in pts], [100 * (p["error"] - dense_err) for p in pts], marker=marker, label=label)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (dense float32 bytes / bytes)")
    ax.set_ylabel("accuracy loss (error - dense error, points)")
    ax.set_title(f"{MODEL} on MNIST: pruning + quantization work best together")
    ax.grid(alpha=0.3)
    ax.legend()
    study.figure(fig, "pruning_plus_quantization.png", "Accuracy loss against compression ratio; sizes are real "
                 ".dcz files (pruning only: the same files with float32 values in place of codebook indices).")


def _claims(study, points, dense_err) -> None:
    best = {}
    for method, pts in points.items():
        ok = [p["ratio"] for p in pts if p["error"] - dense_err <= NO_LOSS_POINTS / 100]
        best[method] = max(ok) if ok else None
    both = best["pruning + quantization"]
    others = [b for k, b in best.items() if k != "pruning + quantization" and b is not None]
    say = ", ".join(f"{k} {'-' if b is None else f'{b:.1f}x'}" for k, b in best.items())
    study.claim("pruning and quantization together compress more than either alone, without loss",
                "pruning + trained quantization: 35-49x with no loss, either alone much less (Deep Compression Fig. 6)",
                f"largest ratio within {NO_LOSS_POINTS} points of dense: {say}",
                both is not None and all(both > o for o in others), "sizes of real files; error on the test set")
    top = max(points["pruning + quantization"], key=lambda p: p["ratio"])
    study.claim(f"{MODEL} compresses {PAPER_RATIO}x without loss",
                f"{PAPER_RATIO}x, 1.64% -> 1.58% (Deep Compression Table 1)",
                f"largest no-loss ratio {'-' if both is None else f'{both:.1f}x'}; the most compressed point "
                f"{top['variant']}: {top['ratio']:.1f}x at {pct(top['error'])} (dense {pct(dense_err)})",
                both is not None and both >= PAPER_RATIO,
                "one-shot pruning of every layer alike and one retraining here; the paper (and `deepcompress compress`, "
                "44.6x) prune per layer in rounds")
