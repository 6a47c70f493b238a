"""`deepcompress export FILE --onnx OUT.onnx`: a .dcz file's model as ONNX (needs torch, onnx, onnxscript)."""

from __future__ import annotations


def _run(args) -> int:
    from .onnx_export import export_onnx

    out = export_onnx(args.file, args.onnx, args.opset)
    print(f"{args.file} -> {out} ({out.stat().st_size:,} bytes; dense decoded weights, dynamic batch)")
    return 0


def register(sub) -> None:
    """Add the `export` command."""
    p = sub.add_parser("export", help="write a .dcz file's model as ONNX",
                       description="Decode a .dcz file to its PyTorch model (deepcompress.decompress) and export "
                                   "it with torch.onnx (dynamo exporter): input 'input' (batch, *input shape), "
                                   "output 'output'. Needs the onnx and onnxscript packages.")
    p.add_argument("file", help="the .dcz file")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, help="ONNX opset version (default: torch's exporter default)")
    p.set_defaults(func=_run)
