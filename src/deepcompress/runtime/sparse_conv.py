"""A pruned, weight-shared 2-D convolution: decoded once to dense, or run sparse on im2col patches."""

from __future__ import annotations

import numpy as np

from .layouts import LayoutBytes
from ..format.graph import pair_of
from ..format.layer import QuantizedLayer
from .nonzeros import from_positions
from .policy import choose_conv_path
from .sparse_fc import BATCH_BLOCK, SparseLinear

CONV_PATHS = ("dense", "sparse")


def _torch():
    try:
        import torch
    except ImportError:  # torch is optional for the runtime
        return None
    return torch


def im2col(x: np.ndarray, kh: int, kw: int, stride, padding) -> tuple[np.ndarray, int, int]:
    """Patches of x (N, C, H, W) as rows of shape (N*Ho*Wo, C*kh*kw), with Ho and Wo; stride and padding
    are ints or (height, width) pairs."""
    (sh, sw), (ph, pw) = pair_of(stride), pair_of(padding)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    n, c, ho, wo = win.shape[:4]
    patches = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    return np.ascontiguousarray(patches, dtype=np.float32), ho, wo


class SparseConv2d:
    """Conv2d with weights (out_c, in_c, kh, kw) given as a layer whose 2-D view is (out_c, in_c*kh*kw)."""

    def __init__(self, nz: QuantizedLayer, kernel_shape, bias=None, stride=1, padding=0,
                 path: str = "auto", threads: int = 1):
        """Prepare the chosen path once: 'dense' decodes the weights, 'sparse' builds a panel layout run
        on `threads` threads (the dense path uses torch's own thread setting)."""
        out_c, in_c, kh, kw = (int(v) for v in kernel_shape)
        if nz.matrix_shape != (out_c, in_c * kh * kw):
            raise ValueError(f"weights of shape {nz.matrix_shape} do not fit kernel shape {tuple(kernel_shape)}")
        stride, padding = pair_of(stride), pair_of(padding)
        if min(stride) < 1 or min(padding) < 0:
            raise ValueError(f"stride must be >= 1 and padding >= 0, got {stride} and {padding}")
        self.kernel_shape = (out_c, in_c, kh, kw)
        self.nnz = nz.nnz
        self.stride, self.padding = stride, padding
        self.path = choose_conv_path(nz) if path == "auto" else path
        if self.path not in CONV_PATHS:
            raise ValueError(f"unknown conv path {path!r}; choose auto, dense or sparse")
        self.bias = np.zeros(out_c, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
        if self.bias.shape != (out_c,):
            raise ValueError(f"bias must have shape ({out_c},), got {self.bias.shape}")
        if self.path == "sparse":
            self._linear = SparseLinear.from_layer(nz, self.bias, layout="panel",
                                                         batch=BATCH_BLOCK, threads=threads)  # patches arrive in blocks
        else:
            self._weight = nz.to_dense().reshape(self.kernel_shape)

    @property
    def kind(self) -> str:
        """'dense', or 'sparse-' and the name of the sparse layout."""
        return "dense" if self.path == "dense" else f"sparse-{self._linear.kind}"

    def nbytes(self) -> LayoutBytes:
        """Bytes of the prepared weights (the dense path's decoded array counts as entries); no bias."""
        if self.path == "sparse":
            return self._linear.nbytes()
        return LayoutBytes(self.nnz, self._weight.nbytes, 0, 0)

    def __call__(self, x) -> np.ndarray:
        """Output (N, out_c, Ho, Wo) float32 for input (N, in_c, H, W)."""
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"input must be a floating-point array, got dtype {arr.dtype}")
        out_c, in_c, kh, kw = self.kernel_shape
        if arr.ndim != 4 or arr.shape[1] != in_c:
            raise ValueError(f"input must have shape (N, {in_c}, H, W), got {arr.shape}")
        h, w = arr.shape[2] + 2 * self.padding[0], arr.shape[3] + 2 * self.padding[1]
        if h < kh or w < kw:
            raise ValueError(f"input of {arr.shape[2]}x{arr.shape[3]} is smaller than the {kh}x{kw} kernel")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if self.path == "dense":
            torch = _torch()
            if torch is not None:
                out = torch.nn.functional.conv2d(torch.from_numpy(arr), torch.from_numpy(self._weight),
                                                 torch.from_numpy(self.bias), self.stride, self.padding)
                return out.numpy()
        patches, ho, wo = im2col(arr, kh, kw, self.stride, self.padding)
        if self.path == "dense":
            rows = patches @ self._weight.reshape(out_c, -1).T + self.bias
        else:
            rows = self._linear(patches)
        return np.ascontiguousarray(rows.reshape(arr.shape[0], ho, wo, out_c).transpose(0, 3, 1, 2))


def conv_from_positions(kernel_shape, positions, codes, codebook, bias=None, stride=1,
                        padding=0, path: str = "auto", threads: int = 1) -> SparseConv2d:
    """A SparseConv2d from flat positions into the (out_c, in_c, kh, kw) weight, codes and codebook,
    its sparse path run on `threads` threads."""
    out_c, in_c, kh, kw = (int(v) for v in kernel_shape)
    nz = from_positions((out_c, in_c * kh * kw), positions, codes, codebook)
    return SparseConv2d(nz, kernel_shape, bias, stride, padding, path, threads)
