"""The .dcz compressed-model file format (numpy + stdlib only; spec in docs/FORMAT.md).

    layer = QuantizedLayer.from_dense("ip1", "fc", weight, codebook, bias=b, gap_bits=5, value_dtype="f16")
    nbytes = write("model.dcz", [layer, ...], {"model": "lenet300", "ops": [...]})
    layers, meta = read("model.dcz")
    size_breakdown(open("model.dcz", "rb").read()).layers[0].index
"""

from .container import decode, encode, read, read_bytes, write
from .errors import FormatError
from .layer import VALUE_TYPES, LayerError, QuantizedLayer, matrix_shape
from .manifest import VERSION
from .sizes import LayerSizes, SizeReport, file_size_breakdown, size_breakdown

__all__ = ["FormatError", "LayerError", "LayerSizes", "QuantizedLayer", "SizeReport", "VALUE_TYPES", "VERSION",
           "decode", "encode", "file_size_breakdown", "matrix_shape", "read", "read_bytes", "size_breakdown",
           "write"]
