"""Run compressed networks on the CPU straight from their compact form (EIE's lesson in software).

Reads only the neutral `Nonzeros` description (positions, codebook indices, codebook); never imports
training code. torch is used only, when present, for the dense path of convolutions.
"""

from .layouts import CscLayout, GroupedLayout, LayoutBytes, PanelLayout
from .nonzeros import Nonzeros, from_dense, from_positions
from .policy import choose_conv_path, choose_fc_layout
from .sparse_conv import SparseConv2d, conv_from_positions
from .sparse_fc import SparseLinear, linear_from_dense, linear_from_positions

__all__ = [
    "CscLayout", "GroupedLayout", "LayoutBytes", "Nonzeros", "PanelLayout", "SparseConv2d",
    "SparseLinear", "choose_conv_path", "choose_fc_layout", "conv_from_positions", "from_dense",
    "from_positions", "linear_from_dense", "linear_from_positions",
]
