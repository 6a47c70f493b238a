"""The talk's experiments on real data: `deepcompress study NAME` writes RESULTS_DIR/NAME/study.json + PNGs.

Each study is one module here with TITLE and run(bench, study); STUDIES lists them in the talk's order of
importance for the report. The modules are imported only when their study runs (they import torch).
"""

STUDIES = (
    "number-formats",
    "cost-of-operations",
    "weight-distributions",
    "pruning",
    "bits-per-weight",
    "pruning-plus-quantization",
    "pruning-lstm",
    "activation-density",
    "inference-summary",
    "frames-per-joule",
)


def module_name(study: str) -> str:
    """The module that runs `study` (dashes become underscores)."""
    return f"deepcompress.studies.{study.replace('-', '_')}"
