"""A .dcz file's model as ONNX: the decoded model (deepcompress.decompress) through torch.onnx's exporter
(torch.export + onnxscript), with a dynamic batch dimension, for ONNX Runtime and other ONNX tools.

The weights in the ONNX file are the decoded dense ones (pruned weights are zeros, shared weights their
centroid values), so it computes what the CPU runtime computes but is as large as the dense model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import atomic
from .errors import UserError

ONNX_PACKAGES = "onnx==1.23.2 onnxscript==0.7.2"
INPUT_NAME, OUTPUT_NAME = "input", "output"


def export_onnx(path: str | Path, out: str | Path, opset: int | None = None) -> Path:
    """Write the model in the .dcz file `path` to the ONNX file `out` (input "input" of shape
    (batch, *input_shape), its variable axes dynamic too, output "output"); `opset` is the ONNX opset (default: torch's). Returns `out`."""
    try:
        import onnx  # noqa: F401  (the exporter needs both; fail here with the install line)
        import onnxscript  # noqa: F401
    except ImportError:
        raise UserError(f"ONNX export needs the onnx and onnxscript packages: pip install {ONNX_PACKAGES}") from None
    import torch

    from .to_torch import decompress

    model = decompress(path)
    fp = model.forward_pass
    dtype = torch.int64 if fp.input_dtype == "int64" else torch.float32
    example = torch.zeros(2, *fp.input_shape, dtype=dtype)  # 2, not 1: torch.export specialises size 1
    dims = {0: torch.export.Dim("batch"), **{a + 1: torch.export.Dim(f"length{a}") for a in fp.variable_axes}}
    # The exporter logs a warning per torchvision op it cannot register; they concern models we never make.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=(dims,))
    except Exception as exc:  # torch.export and onnxscript raise many types; name the failure on one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{path}: ONNX export failed ({type(exc).__name__}: {first})") from None
    atomic.write_bytes(out, program.model_proto.SerializeToString())
    return Path(out)
