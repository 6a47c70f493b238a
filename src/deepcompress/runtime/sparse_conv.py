"""A pruned, weight-shared 2-D convolution: decoded once to dense, or run sparse on im2col patches."""

from __future__ import annotations

import numpy as np

from ..format.graph import padding4, pair_of
from ..format.layer import QuantizedLayer
from .layouts import LayoutBytes
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


def im2col(x: np.ndarray, kh: int, kw: int, stride, padding, dilation=1) -> tuple[np.ndarray, int, int]:
    """Patches of x (N, C, H, W) as rows of shape (N*Ho*Wo, C*kh*kw), channel slowest, with Ho and Wo;
    stride and dilation are ints or pairs, padding an int, a pair or (top, bottom, left, right)."""
    (sh, sw), (dh, dw) = pair_of(stride), pair_of(dilation)
    top, bottom, left, right = padding4(padding)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    reach = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = np.lib.stride_tricks.sliding_window_view(x, reach, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]
    n, c, ho, wo = win.shape[:4]
    patches = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw)
    return np.ascontiguousarray(patches, dtype=np.float32), ho, wo


class SparseConv2d:
    """Conv2d with weights (out_c, in_c / groups, kh, kw) given as a layer whose 2-D view is
    (out_c, in_c / groups * kh * kw); stride, dilation and padding as in PyTorch's conv2d, padding may
    also be (top, bottom, left, right)."""

    def __init__(self, nz: QuantizedLayer, kernel_shape, bias=None, stride=1, padding=0,
                 path: str = "auto", threads: int = 1, dilation=1, groups: int = 1):
        """Prepare the chosen path once: 'dense' decodes the weights, 'sparse' builds a panel layout run
        on `threads` threads (the dense path uses torch's own thread setting; grouped convolutions always
        take it)."""
        out_c, in_c, kh, kw = (int(v) for v in kernel_shape)
        if nz.matrix_shape != (out_c, in_c * kh * kw):
            raise ValueError(f"weights of shape {nz.matrix_shape} do not fit kernel shape {tuple(kernel_shape)}")
        stride, dilation, padding = pair_of(stride), pair_of(dilation), padding4(padding)
        if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or groups < 1 or out_c % groups:
            raise ValueError(f"stride and dilation must be >= 1, padding >= 0, groups >= 1 dividing the "
                             f"{out_c} outputs; got {stride}, {dilation}, {padding}, {groups}")
        self.kernel_shape = (out_c, in_c, kh, kw)
        self.nnz = nz.nnz
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, int(groups)
        self.path = (choose_conv_path(nz) if groups == 1 else "dense") if path == "auto" else path
        if self.path not in CONV_PATHS or (self.path == "sparse" and groups != 1):
            raise ValueError(f"conv path {path!r}: choose auto, dense or (ungrouped only) sparse")
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
        """Output (N, out_c, Ho, Wo) float32 for input (N, in_c * groups, H, W)."""
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"input must be a floating-point array, got dtype {arr.dtype}")
        out_c, in_c, kh, kw = self.kernel_shape
        top, bottom, left, right = self.padding
        if arr.ndim != 4 or arr.shape[1] != in_c * self.groups:
            raise ValueError(f"input must have shape (N, {in_c * self.groups}, H, W), got {arr.shape}")
        h, w = arr.shape[2] + top + bottom, arr.shape[3] + left + right
        if h < self.dilation[0] * (kh - 1) + 1 or w < self.dilation[1] * (kw - 1) + 1:
            raise ValueError(f"input of {arr.shape[2]}x{arr.shape[3]} is smaller than the {kh}x{kw} kernel")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if self.path == "dense":
            torch = _torch()
            if torch is not None:
                return self._torch_conv(torch, arr)
        patches, ho, wo = im2col(arr, kh, kw, self.stride, self.padding, self.dilation)
        if self.path == "dense":
            rows = self._grouped_matmul(patches)
        else:
            rows = self._linear(patches)
        return np.ascontiguousarray(rows.reshape(arr.shape[0], ho, wo, out_c).transpose(0, 3, 1, 2))

    def _torch_conv(self, torch, arr: np.ndarray) -> np.ndarray:
        top, bottom, left, right = self.padding
        t = torch.from_numpy(arr)
        if (top, left) != (bottom, right):
            t = torch.nn.functional.pad(t, (left, right, top, bottom))
            top = left = 0
        out = torch.nn.functional.conv2d(t, torch.from_numpy(self._weight), torch.from_numpy(self.bias),
                                         self.stride, (top, left), self.dilation, self.groups)
        return out.numpy()

    def _grouped_matmul(self, patches: np.ndarray) -> np.ndarray:
        """Patches times each group's weights, groups side by side, plus bias."""
        out_c = self.kernel_shape[0]
        per_in, per_out = patches.shape[1] // self.groups, out_c // self.groups
        weight = self._weight.reshape(out_c, -1)
        rows = np.empty((patches.shape[0], out_c), np.float32)
        for g in range(self.groups):
            rows[:, g * per_out:(g + 1) * per_out] = (patches[:, g * per_in:(g + 1) * per_in]
                                                      @ weight[g * per_out:(g + 1) * per_out].T)
        return rows + self.bias


def conv_from_positions(kernel_shape, positions, codes, codebook, bias=None, stride=1,
                        padding=0, path: str = "auto", threads: int = 1) -> SparseConv2d:
    """A SparseConv2d from flat positions into the (out_c, in_c, kh, kw) weight, codes and codebook; the
    sparse path runs on `threads` threads."""
    out_c, in_c, kh, kw = (int(v) for v in kernel_shape)
    nz = from_positions((out_c, in_c * kh * kw), positions, codes, codebook)
    return SparseConv2d(nz, kernel_shape, bias, stride, padding, path, threads)
