"""Run compressed networks on the CPU straight from their compact form (EIE's lesson in software).

    model = load("model.dcz")          # FC layers on 16-bit compact layouts, conv dense or sparse
    model = load("model.dcz", precision="int8")   # FC layers in int8 (or int16): quantize.py
    logits = model(images)             # (1, 28, 28) or (N, 1, 28, 28) float32 -> (10,) or (N, 10)
    model.summary()                    # per layer: layout, bytes per nonzero

Reads the format's one sparse-layer type (deepcompress.format.QuantizedLayer: positions, codebook
indices, codebook) and its typed forward pass (deepcompress.format.graph); never imports training code. torch is used only, when present, for the dense path of convolutions.
"""

from .errors import InputError, ModelError
from .int_fc import IntLinear
from .layouts import CscLayout, GroupedLayout, LayoutBytes, PanelLayout
from .model import CompressedModel, load
from .nonzeros import from_dense, from_positions
from .policy import choose_conv_path, choose_fc_layout
from .sparse_conv import SparseConv2d, conv_from_positions
from .sparse_fc import SparseLinear, linear_from_dense, linear_from_positions

__all__ = [
    "CompressedModel", "CscLayout", "GroupedLayout", "InputError", "IntLinear", "LayoutBytes", "ModelError",
    "PanelLayout", "SparseConv2d", "SparseLinear", "choose_conv_path", "choose_fc_layout",
    "conv_from_positions", "from_dense", "from_positions", "linear_from_dense", "linear_from_positions", "load",
]
