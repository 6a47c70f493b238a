"""A pruned, weight-shared fully connected layer executed straight from its compact layout."""

from __future__ import annotations

import numba
import numpy as np

from .layouts import BUILDERS, LayerSizes, LayoutBytes, build_csc, build_panel
from ..format.layer import QuantizedLayer
from .nonzeros import from_dense, from_positions
from .policy import LAYOUTS, choose_fc_layout, gemm_min_rows, panel_width
from .simd import LANES
from .int_fc import IntLinear
from .quantize import check_precision

# Batches are processed in column blocks of xt of about BLOCK_BYTES (at least BATCH_BLOCK samples): a
# block stays in L2, and narrow layers (im2col patches of a small convolution) still get few blocks,
# so the per-block Python overhead stays small.
BATCH_BLOCK = 64
BLOCK_BYTES = 256 << 10


def as_input(x, n_in: int) -> np.ndarray:
    """x as a C-contiguous float32 array of shape (n_in,) or (N, n_in); TypeError/ValueError otherwise."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"input must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2) or arr.shape[-1] != n_in:
        raise ValueError(f"input must have shape ({n_in},) or (N, {n_in}), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def transpose_into(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[...] = src.T for 2-D float32 arrays."""
    # through a copy whose rows are 16 floats longer: numpy's strided copy thrashes the cache when a
    # row stride is a multiple of 4 KB (a 64 x 4096 batch took 0.84 ms, 0.19 ms this way)
    padded = np.empty((src.shape[0], src.shape[1] + 16), np.float32)
    padded[:, :src.shape[1]] = src
    dst[...] = padded[:, :src.shape[1]].T


def usable_threads(threads: int) -> int:
    """`threads` checked (>= 1) and capped at the threads numba may start (NUMBA_NUM_THREADS)."""
    if int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return min(int(threads), numba.config.NUMBA_NUM_THREADS)


class SparseLinear(LayerSizes):
    """y = W x + b for a sparse W (rows = outputs, cols = inputs, PyTorch's (out, in)) held in one layout.

    With threads > 1 the kernels share the output rows among that many threads (csc: its row blocks,
    so build it with at least that many; panel: equal row ranges); results equal the 1-thread ones.
    Calling a threaded layer from several Python threads at once needs numba's omp or tbb threading
    layer (its fallback, workqueue, aborts the process then); 1-thread layers have no such limit.

    Many rows at once (a batch, or a sequence's positions) are a matrix product: a layer built with
    layout 'auto' on one thread runs inputs of at least `gemm_rows` rows (policy.gemm_min_rows, a cost
    model) as BLAS sgemm on its weights decoded to a dense float32 matrix, decoded on the first such call
    and kept (out x in x 4 bytes: `decoded_bytes`); fewer rows run on the layout's kernels.
    """

    def __init__(self, layout, bias=None, threads: int = 1):
        """Wrap a built layout (see layouts.py), an optional bias of length out_features, and the thread count."""
        self.layout = layout
        self.threads = usable_threads(threads)
        self.source: QuantizedLayer | None = None  # what the decoded matrix is decoded from
        self.gemm_rows: int | None = None  # inputs of at least this many rows run as sgemm (None: never)
        self._dense_t: np.ndarray | None = None
        n_out = layout.shape[0]
        if bias is None:
            self.bias = np.zeros(n_out, np.float32)
        else:
            self.bias = np.ascontiguousarray(bias, dtype=np.float32)
            if self.bias.shape != (n_out,):
                raise ValueError(f"bias must have shape ({n_out},), got {self.bias.shape}")

    @classmethod
    def from_layer(cls, nz: QuantizedLayer, bias=None, layout: str = "auto",
                      act_density: float | None = None, batch: int = 1, threads: int = 1,
                      precision: str = "fp32"):
        """Build the layer; layout 'auto' picks one from the expected input density and batch size.

        precision 'int8' or 'int16' returns an IntLinear (one thread; its layouts: rows, cols, csc).
        """
        if check_precision(precision) != "fp32":
            return IntLinear(nz, bias, precision, layout, act_density, batch=batch)
        threads = usable_threads(threads)
        name = choose_fc_layout(nz, act_density, batch, threads) if layout == "auto" else layout
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
        if name == "panel":
            layer = cls(build_panel(nz, panel_width(batch)), bias, threads)
        elif name == "csc":
            layer = cls(build_csc(nz, threads=threads), bias, threads)
        else:
            layer = cls(BUILDERS[name](nz), bias, threads)
        if layout == "auto" and threads == 1:  # the cost model was measured on one thread
            layer.source, layer.gemm_rows = nz, gemm_min_rows(nz)
        return layer

    @property
    def kind(self) -> str:
        """Name of the layout in use."""
        return self.layout.kind

    def nbytes(self) -> LayoutBytes:
        """Bytes of the weight layout (entries, pointers, codebook); the bias is not counted."""
        return self.layout.nbytes()

    def decoded(self) -> np.ndarray:
        """The dense float32 (out, in) weight matrix, zeros where pruned (decoded from the source layer,
        or, for a layer built from a layout alone, by running the layout on the identity: exact, since
        every output is one codebook value times 1)."""
        if self.source is not None:
            return self.source.to_dense().reshape(self.layout.shape)
        eye = np.eye(self.in_features, dtype=np.float32)
        out = np.zeros((self.in_features, self.out_features), np.float32)
        for start in range(0, self.in_features, BATCH_BLOCK):
            block = eye[start:start + BATCH_BLOCK]
            xt = np.ascontiguousarray(block.T)
            yt = np.zeros((self.out_features, block.shape[0]), np.float32)
            self.layout.matmat(xt, yt, 1)
            out[start:start + block.shape[0]] = yt.T
        return out.T.copy()

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded float32 matrix this layer holds now (0 until a many-row input decodes it)."""
        return 0 if self._dense_t is None else self._dense_t.nbytes

    def __call__(self, x) -> np.ndarray:
        """The layer's float32 output for x of shape (in,) or (N, in): shape (out,) or (N, out)."""
        x = as_input(x, self.in_features)
        if self.threads == 1:
            return self._run(x)
        before = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            return self._run(x)
        finally:
            numba.set_num_threads(before)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 1:
            y = self.bias.copy()
            self.layout.matvec(x, y, self.threads)
            return y
        n = x.shape[0]
        if self.gemm_rows is not None and n >= self.gemm_rows:
            return self._gemm(x)
        out = np.empty((n, self.out_features), np.float32)
        step = max(BATCH_BLOCK, BLOCK_BYTES // (4 * max(self.in_features, 1)) // BATCH_BLOCK * BATCH_BLOCK)
        for start in range(0, n, step):
            block = x[start:start + step]
            m = block.shape[0]
            lanes = -(-m // LANES) * LANES  # zero-padded to whole vectors of the batched panel kernel
            xt = np.zeros((self.in_features, lanes), np.float32)
            transpose_into(block, xt[:, :m])
            yt = np.empty((self.out_features, lanes), np.float32)
            yt[:] = self.bias[:, None]
            self.layout.matmat(xt, yt, self.threads)
            transpose_into(yt[:, :m], out[start:start + m])
        return out


    def _gemm(self, x: np.ndarray) -> np.ndarray:
        """x @ W.T + b by BLAS sgemm on the decoded matrix (decoded on the first call)."""
        if self._dense_t is None:
            self._dense_t = np.ascontiguousarray(self.decoded().T)  # (in, out): x @ it is one sgemm
        out = np.matmul(x, self._dense_t)
        out += self.bias
        return out


def linear_from_positions(shape, positions, codes, codebook, bias=None, layout: str = "auto",
                          act_density: float | None = None, batch: int = 1, threads: int = 1) -> SparseLinear:
    """A SparseLinear from flat row-major nonzero positions, their codebook indices and the codebook."""
    nz = from_positions(shape, positions, codes, codebook)
    return SparseLinear.from_layer(nz, bias, layout, act_density, batch, threads)


def linear_from_dense(weights, codebook, bias=None, layout: str = "auto",
                      act_density: float | None = None, batch: int = 1, threads: int = 1) -> SparseLinear:
    """A SparseLinear from a dense quantized (out, in) matrix whose nonzeros are codebook values."""
    return SparseLinear.from_layer(from_dense(weights, codebook), bias, layout, act_density, batch, threads)
