"""`deepcompress run FILE`: evaluate a compressed .dcz file end to end with the CPU runtime (no torch model).

Reports the test error, which must equal the one in the compression report (results.json beside the
file, when present), the batch-1 latency and the throughput at batch N, and each layer's runtime layout.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .data import DATASETS, as_model_input, load_test_set
from .errors import UserError, check_parallelism


def compression_report(path: Path) -> dict | None:
    """results.json next to the .dcz file, if it is there and describes a file of this size."""
    report = path.parent / "results.json"
    try:
        rec = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or not ({"test_error", "test_loss"} & set(rec)):
        return None
    rec["describes_this_file"] = rec.get("file_bytes") in (None, path.stat().st_size)
    rec["path"] = str(report)
    return rec


def run_file(path: Path, data: str | None, data_dir: str | None, batch: int, latency_images: int,
             threads: int = 1, precision: str = "fp32") -> dict:
    """Everything `deepcompress run` reports, as a JSON-ready dict."""
    from .runtime import load
    from .runtime.measure import evaluate, latency

    if batch < 1 or latency_images < 1:
        raise UserError("--batch and --latency-images must be at least 1")
    model1 = load(path, batch=1, threads=threads, precision=precision)
    model_n = load(path, batch=batch, threads=threads, precision=precision)
    made_for = model1.meta.get("dataset", "mnist")
    if data is None and made_for not in DATASETS:
        raise UserError(f"the file was made for data set {made_for!r}; pass --data ({', '.join(DATASETS)}, "
                        f"a folder or a .npz file; for a language model x (N, T) token ids, y (N, T) next ids)")
    name, x, y = load_test_set(data or made_for, folder=data_dir)
    x = as_model_input(x, model1.forward.input_dtype, name)
    if tuple(x.shape[1:]) != model1.input_shape:
        raise UserError(f"{path}: the model takes inputs of shape {model1.input_shape}, "
                        f"{name} inputs are {tuple(x.shape[1:])}")
    scores = tuple(model1(x[:1]).shape[1:-1])  # per sample: the positions that each get a class
    if scores != tuple(y.shape[1:]):
        raise UserError(f"{name}: labels y of shape {tuple(y.shape)} do not fit the model's outputs: it scores "
                        + (f"each of {scores} positions" if scores else "one class per sample")
                        + f", so y must be {(len(y), *scores)}")
    ev = evaluate(model_n, x, y, batch)
    lat = latency(model1, x, latency_images)
    # batch 1 (sparse-input layouts) and batch N must classify the same images alike
    consistent = bool((lat.pop("predictions") == ev["predictions"][:lat["images"]]).all())
    ev.pop("predictions")
    out = {"file": str(path), "model": model1.meta.get("model"), "dataset": name, "precision": precision, "test": ev,
           "latency_batch1": lat, "batch": batch, "batch1_agrees_with_batchN": consistent,
           "layers": model1.summary(), "layers_batchN": [r["layout"] for r in model_n.summary()]}
    report = compression_report(path)
    if report is not None:
        # the report's error is the fp32 one: an int8/int16 run is compared with it only in the output
        comparable = (report["describes_this_file"] and report.get("dataset", name) == name
                      and precision == "fp32")
        out["report"] = {"path": report["path"], "comparable": comparable, **_report_match(report, ev, comparable)}
    return out


# results.json's loss is the decoded PyTorch model's, in float32 through other kernels than the runtime's
LOSS_RTOL = 1e-4


def _report_match(report: dict, ev: dict, comparable: bool) -> dict:
    """The report's score (test_error, or a language model's test_loss) and whether this run gives it."""
    if "test_loss" in report and "cross_entropy" in ev:
        loss = report["test_loss"]
        return {"test_loss": loss, "matches": comparable and abs(ev["cross_entropy"] - loss) <= LOSS_RTOL * abs(loss)}
    if "test_error" not in report:  # a loss-scored report, evaluated here with a label per sample
        return {"matches": False, "comparable": False}
    return {"test_error": report["test_error"],
            "matches": comparable and round(report["test_error"] * ev["labels"]) == ev["wrong"]}


def print_text(res: dict) -> None:
    """The human-readable form of run_file's result."""
    ev, lat = res["test"], res["latency_batch1"]
    per_position = "perplexity" in ev
    what = f"{ev['images']:,} sequences, {ev['labels']:,} positions" if per_position else f"{ev['images']:,} images"
    print(f"{res['file']}: {res['model']} on the {res['dataset']} test set ({what})")
    line = f"  test error  {100 * ev['error']:.2f}% ({ev['wrong']} wrong)"
    if per_position:
        line = (f"  perplexity  {ev['perplexity']:.3f} ({ev['cross_entropy']:.4f} nats a position); next-token "
                f"error {100 * ev['error']:.2f}%")
    print(line + _report_note(res))
    unit = "sequence" if per_position else "image"
    print(f"  latency     batch 1: median {lat['median_us']:.1f} us per {unit} (p10 {lat['p10_us']:.1f}, "
          f"p90 {lat['p90_us']:.1f}) over {lat['images']} {unit}s")
    print(f"  throughput  batch {res['batch']}: {ev['images_per_s']:,.0f} {unit}s/s "
          f"({ev['seconds']:.3f} s for the test set)")
    for r, layout_n in zip(res["layers"], res["layers_batchN"]):
        shape = "x".join(map(str, r["shape"]))
        print(f"  {r['name']:<8} {r['kind']:<4} {shape:<12} {r['nonzeros']:>8,} nonzeros "
              f"({100 * r['density']:.1f}%)  layout {r['layout']} (batch {res['batch']}: {layout_n}), "
              f"{r['bytes_per_nonzero']['total']:.2f} B/nonzero "
              f"({r['bytes_per_nonzero']['entries']:.2f} entries + {r['bytes_per_nonzero']['pointers']:.2f} "
              f"pointers, codebook {r['bytes']['codebook']} B); {r['why']}")
    if not res["batch1_agrees_with_batchN"]:
        print("  warning: batch-1 and batch-N predictions differ on some images", file=sys.stderr)


def _report_note(res: dict) -> str:
    """How the compression report beside the file compares with this run."""
    rep = res.get("report")
    if rep is None:
        return "; no compression report (results.json) beside the file"
    if "test_loss" in rep:
        score = f"perplexity {math.exp(rep['test_loss']):.3f}"
    elif "test_error" in rep:
        score = f"{100 * rep['test_error']:.2f}%"
    else:
        return f"; {rep['path']} scores a loss, and this test set has a label per sample: not compared"
    if res.get("precision", "fp32") != "fp32":
        return f" in {res['precision']}; compression report (fp32) {score}"
    if not rep["comparable"]:
        return f"; {rep['path']} describes another file or data set ({score})"
    return f"; compression report {score}: {'match' if rep['matches'] else 'MISMATCH'}"


def _limit_threads(threads: int) -> None:
    # torch (the dense conv path) spin-waits its extra threads, which on a busy machine made LeNet-5 at
    # batch 1 100x slower (48 ms instead of 0.4 ms per image), so it gets no more threads than asked for.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _run(args) -> int:
    check_parallelism("--threads", args.threads, refuse_per_core=4)
    _limit_threads(args.threads)
    if args.text:
        return _run_text(args)
    res = run_file(Path(args.file), args.data, args.data_dir, args.batch, args.latency_images,
                   args.threads, args.precision)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_text(res)
    rep = res.get("report")
    return 1 if rep is not None and rep["comparable"] and not rep["matches"] else 0


def _run_text(args) -> int:
    """--text: sentence embeddings from a text-model file."""
    from . import runtime
    from .cli_text import embed_file_texts, is_text_model, print_embeddings

    if len(args.text) > 2:
        raise UserError(f"--text takes one or two texts, got {len(args.text)}")
    model = runtime.load(args.file, threads=args.threads, precision=args.precision)
    if not is_text_model(model.meta):
        raise UserError(f"{args.file}: --text needs a sentence-encoder file (meta text_model); this one is not")
    res = embed_file_texts(model, args.text, args.file)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_embeddings(res)
    return 0


def register(sub) -> None:
    """Add the `run` command."""
    p = sub.add_parser("run", help="evaluate a compressed .dcz file with the CPU runtime: error and latency",
                       description="Run a .dcz file with deepcompress.runtime (sparse layers straight from "
                                   "the compressed form) on a test set: test error (checked against "
                                   "results.json beside the file; exit status 1 if they differ), batch-1 "
                                   "latency and batch-N throughput, and each layer's runtime layout.")
    p.add_argument("file", help="the .dcz file")
    p.add_argument("--data", metavar="|".join(DATASETS) + "|DIR|FILE.npz",
                   help="test set (default: the one the file was made for): a data set name, a .npz file with "
                        "arrays x (N, *input shape) and y (N,) labels, or a folder with test.npz or the IDX pair "
                        "t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte (see docs/API.md)")
    p.add_argument("--data-dir", help="folder of IDX files to use instead of the installed data set")
    p.add_argument("--batch", type=int, default=64, help="batch size for the error pass and throughput")
    p.add_argument("--latency-images", type=int, default=1000, help="images timed one at a time (batch 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--precision", choices=("fp32", "int16", "int8"), default="fp32",
                   help="arithmetic of the FC layers: fp32 (exact, default), int16 or int8 (quantized "
                        "codebook and activations, see the README)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for our sparse kernels and torch's dense conv path (default 1)")
    p.add_argument("--text", action="append", metavar="TEXT",
                   help="instead of a test set: embed this text with a sentence-encoder file (give it twice "
                        "for their cosine); first dims, norm, batch-1 latency")
    p.set_defaults(func=_run)
