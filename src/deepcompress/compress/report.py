"""The report of a compression run: Deep Compression's per-layer table from the file's own bytes, plus
test errors by stage; written as OUT/report.md and OUT/results.json."""

from __future__ import annotations

from pathlib import Path

from .. import atomic
from .. import format as dcz


def results_record(model_name: str, dataset: str, outcome: dict, command: str) -> dict:
    """results.json content: the keys benchmarks and the runtime rely on, plus the full detail.

    Per-layer fields use the file's names (docs/FORMAT.md): `index_bits` is the codebook-index width,
    `gap_bits` the relative-index width.
    """
    sizes = dcz.file_size_breakdown(outcome["file"])
    layers, _ = dcz.read(outcome["file"])
    layer_rows = []
    for layer, size in zip(layers, sizes.layers):
        layer_rows.append({
            "name": layer.name, "kind": layer.kind, "shape": list(layer.shape), "weights": layer.size,
            "nonzeros": layer.nnz, "kept": layer.nnz / layer.size, "index_bits": layer.index_bits,
            "gap_bits": layer.gap_bits, "fillers": size.fillers,
            "index_bytes_raw": size.index_raw, "index_bytes": size.index, "index_huffman": size.index_huffman,
            "gap_bytes_raw": size.gap_raw, "gap_bytes": size.gap, "gap_huffman": size.gap_huffman,
            "codebook_bytes": size.codebook, "bias_bytes": size.bias, "values": size.values,
            "header_bytes": size.header,
            "bytes": size.total, "dense_bytes": size.dense_fp32, "size_pct": 100 * size.total / size.dense_fp32,
        })
    stages = outcome["stages"]
    stored = sorted({size.values for size in sizes.layers})
    metric = outcome.get("metric", "error")  # "loss" when the run was scored by a user's loss
    return {
        "model": model_name, "dataset": dataset, **({} if metric == "error" else {"metric": metric}),
        f"test_{metric}": outcome[f"test_{metric}"], f"baseline_{metric}": stages[0][f"test_{metric}"],
        "dense_bytes": sizes.dense_fp32, "file_bytes": sizes.total,
        "ratio": sizes.ratio, "file_header_bytes": sizes.file_header, "meta_bytes": sizes.meta,
        "values": "mixed" if len(stored) > 1 else (stored or ["f32"])[0], "layers": layer_rows,
        "stages": stages, "timings_s": {k: round(v, 1) for k, v in outcome["timings"].items()},
        "command": command,
    }


def _layer_line(r: dict) -> str:
    idx = f"{r['index_bytes_raw']:,} -> {r['index_bytes']:,}" + (" (H)" if r["index_huffman"] else "")
    gap = f"{r['gap_bytes_raw']:,} -> {r['gap_bytes']:,}" + (" (H)" if r["gap_huffman"] else "")
    return (f"| {r['name']} | {r['weights']:,} | {100 * r['kept']:.1f}% | {r['index_bits']} | "
            f"{r['gap_bits']} | {r['fillers']:,} | {idx} | {gap} | "
            f"{r['codebook_bytes'] + r['bias_bytes'] + r['header_bytes']:,} | {r['bytes']:,} | "
            f"{r['size_pct']:.2f}% |")


_VALUES_NOTE = {"f16": "Codebook and bias values are stored as float16 (2 bytes each; format version 2).",
                "f32": "Codebook and bias values are stored as float32 (4 bytes each).",
                "mixed": "Codebook and bias values are stored as float16 in some layers, float32 in others."}


def _score(rec: dict, value: float) -> str:
    return f"{value:.4f}" if rec.get("metric") == "loss" else f"{100 * value:.2f}%"


def report_markdown(rec: dict) -> str:
    """A human-readable report of one compression run."""
    metric = rec.get("metric", "error")
    key = f"test_{metric}"
    weights = sum(r["weights"] for r in rec["layers"])
    kept = sum(r["nonzeros"] for r in rec["layers"])
    lines = [
        f"# {rec['model']} on {rec['dataset']}: Deep Compression report", "",
        f"File: {rec['file_bytes']:,} bytes (the file's length); dense fp32 weights + biases "
        f"{rec['dense_bytes']:,} bytes; **ratio {rec['ratio']:.1f}x**.",
        f"Test {metric} measured from the decoded file: **{_score(rec, rec[key])}** "
        f"(baseline {_score(rec, rec[f'baseline_{metric}'])}).", "",
        "| layer | weights | kept | index bits | gap bits | fillers | index bytes (raw -> stored) "
        "| gap bytes (raw -> stored) | codebook + bias + header | total bytes | size % of dense |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[_layer_line(r) for r in rec["layers"]],
        f"| total | {weights:,} | {100 * kept / weights:.1f}% | | | | | | "
        f"file header {rec['file_header_bytes']:,} | {rec['file_bytes']:,} | "
        f"{100 * rec['file_bytes'] / rec['dense_bytes']:.2f}% |", "",
        " ".join(filter(None, ["(H) = Huffman-coded (used only where it makes the stream smaller).",
                               _VALUES_NOTE.get(rec.get("values"))])), "",
        f"## Test {metric} by stage", "", f"| stage | test {metric} | detail |", "|---|---|---|",
        *[f"| {s['stage']} | {_score(rec, s[key])} | "
          f"{', '.join(f'{k} {v}' for k, v in s.items() if k not in ('stage', key))} |"
          for s in rec["stages"]],
        "", f"Time: {rec['timings_s']}", "", f"Command: `{rec['command']}`", "",
    ]
    return "\n".join(lines)


def write_report(out: str | Path, rec: dict) -> None:
    """Write OUT/results.json and OUT/report.md atomically."""
    out = Path(out)
    atomic.write_json(out / "results.json", rec)
    atomic.write_bytes(out / "report.md", report_markdown(rec).encode())
