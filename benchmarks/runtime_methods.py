"""The contenders of benchmarks/runtime_layers.py, the benchmark layers they run, and the timing harness
they share (also runtime_calibration.py's).

Each contender is a zero-argument callable computing one FC layer (batch 1 or N) from inputs prepared
in advance; building it (converting weights, creating sessions) is never timed.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from deepcompress.format import QuantizedLayer
from deepcompress.hardware.layers import random_layer
from deepcompress.runtime import SparseLinear, from_positions

FLUSH_BYTES = 64 << 20  # twice this machine's 32 MB L3
CODEBOOK_SIZE = 16
BATCH = 64
# warm samples: at least WARMUP_MIN warm-up calls for every method, then more up to WARMUP_CALLS while
# they take less than WARMUP_S in all
WARMUP_MIN, WARMUP_CALLS, WARMUP_S = 5, 20, 5e-3
PRECISIONS = ("int8", "int16")
# layouts timed at batch BATCH besides the automatic pick (int8's batched row-quad kernels, compared in one run)
BATCH_LAYOUTS = {"int8": ("rowquads", "panelquads")}


def make_layer(layer, seed: int = 0) -> tuple[QuantizedLayer, np.ndarray]:
    """The layer's weights as a QuantizedLayer with random codes into a 16-entry codebook, and its input vector."""
    weights, acts = random_layer(layer.spec(seed))
    cols = np.repeat(np.arange(layer.inputs), np.diff(weights.indptr))
    positions = weights.indices.astype(np.int64) * layer.inputs + cols
    rng = np.random.default_rng(seed + 1)
    codebook = np.sort(rng.uniform(-1.0, 1.0, CODEBOOK_SIZE)).astype(np.float32)
    codes = rng.integers(0, CODEBOOK_SIZE, positions.size)
    return from_positions((layer.outputs, layer.inputs), positions, codes, codebook), acts


def batch_inputs(layer, act_density: float, n: int, seed: int = 0) -> np.ndarray:
    """n input vectors, each with exactly round(act_density x inputs) positive entries, like random_layer."""
    rng = np.random.default_rng(seed + 2)
    k = int(round(act_density * layer.inputs))
    x = np.zeros((n, layer.inputs), np.float32)
    idx = np.argsort(rng.random((n, layer.inputs)), axis=1)[:, :k]
    np.put_along_axis(x, idx, rng.uniform(0.05, 1.0, (n, k)).astype(np.float32), axis=1)
    return x


def geomean(values) -> float:
    """Geometric mean of positive numbers."""
    values = np.asarray(list(values), dtype=float)
    return float(np.exp(np.log(values).mean()))


def ours(nz: QuantizedLayer, x: np.ndarray, layout: str, threads: int = 1):
    """deepcompress.runtime on one layout, built for x's batch size and thread count: (callable, built layer)."""
    layer = SparseLinear.from_layer(nz, layout=layout, batch=1 if x.ndim == 1 else x.shape[0], threads=threads)
    return (lambda: layer(x)), layer


def ours_int(nz: QuantizedLayer, x: np.ndarray, precision: str, layout: str, act_density=None, batch: int = 1):
    """deepcompress.runtime in int8/int16 on one layout ('auto': the cost model's pick for the batch size):
    (callable, built layer)."""
    layer = SparseLinear.from_layer(nz, layout=layout, precision=precision, act_density=act_density, batch=batch)
    return (lambda: layer(x)), layer


def torch_dense(w: np.ndarray, x: np.ndarray):
    """torch.nn.functional.linear on the dense fp32 weights."""
    wt, xt = torch.from_numpy(w), torch.from_numpy(x)
    return lambda: torch.nn.functional.linear(xt, wt)


def numpy_dense(w: np.ndarray, x: np.ndarray):
    """numpy matmul on the dense fp32 weights."""
    return lambda: x @ w.T


def torch_csr(nz: QuantizedLayer, x: np.ndarray):
    """torch sparse CSR with int32 indices: torch.mv at batch 1, torch.sparse.mm on x.T at batch N."""
    rows, cols = nz.rows_cols()
    order = np.lexsort((cols, rows))  # the layer's entries are in CSC order; CSR wants them by row
    crow = np.zeros(nz.matrix_shape[0] + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=nz.matrix_shape[0]), out=crow[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        w = torch.sparse_csr_tensor(torch.from_numpy(crow), torch.from_numpy(cols[order].astype(np.int32)),
                                    torch.from_numpy(nz.values()[order]), nz.matrix_shape)
    xt = torch.from_numpy(x)
    if x.ndim == 1:
        return lambda: torch.mv(w, xt)
    return lambda: torch.sparse.mm(w, xt.t()).t()


def scipy_csr(nz: QuantizedLayer, x: np.ndarray):
    """scipy.sparse CSR (int32 indices)."""
    w = sp.csr_matrix((nz.values(), nz.rows_cols()), shape=nz.matrix_shape, dtype=np.float32)
    if x.ndim == 1:
        return lambda: w @ x
    return lambda: (w @ x.T).T


def onnxruntime_dense(w: np.ndarray, x: np.ndarray, threads: int):
    """onnxruntime CPU Gemm on the dense fp32 weights, or None when onnxruntime or onnx is missing."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n_out, n_in = w.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess, feed = _ort_session(ort, model, threads, x)
    return lambda: sess.run(None, feed)[0]


def onnxruntime_matmulnbits(w: np.ndarray, x: np.ndarray, threads: int, block: int = 32, accuracy_level: int = 4):
    """onnxruntime's com.microsoft MatMulNBits (4-bit weights in blocks of `block` along the input, one
    float scale per block, default zero point 8; accuracy_level 4: int8 activations, its fastest CPU
    kernels) on the dense weights quantized
    that way, or None when onnxruntime or onnx is missing. The 4-bit rounding is the peer's, not ours:
    its outputs are only checked loosely (relative error < 0.3)."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    n_out, n_in = w.shape
    k_pad = -(-n_in // block) * block
    wp = np.zeros((n_out, k_pad), np.float32)
    wp[:, :n_in] = w
    blocks = wp.reshape(n_out, -1, block)
    scales = np.abs(blocks).max(axis=2) / 7.0
    scales[scales == 0] = 1.0
    q = (np.clip(np.rint(blocks / scales[:, :, None]), -8, 7) + 8).astype(np.uint8)
    packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)  # low nibble first
    node = helper.make_node("MatMulNBits", ["x", "b", "s"], ["y"], domain="com.microsoft", K=n_in, N=n_out,
                            bits=4, block_size=block, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "fc4", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n_out])],
        [numpy_helper.from_array(packed, "b"), numpy_helper.from_array(scales.astype(np.float32).reshape(-1), "s")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    sess, feed = _ort_session(ort, model, threads, x)
    y = sess.run(None, feed)[0].reshape(-1 if x.ndim == 1 else x.shape[0], n_out).squeeze()
    ref = x @ w.T
    if np.linalg.norm(y - ref) > 0.3 * max(np.linalg.norm(ref), 1e-30):
        raise SystemExit("onnxruntime MatMulNBits: outputs far from the dense product (packing wrong?)")
    return lambda: sess.run(None, feed)[0]


def onnxruntime_version() -> str | None:
    """The installed onnxruntime version, or None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


class Timer:
    """Warm and cold (cache-flushed) timings of callables, one sample per call to `sample`; `clock` is
    time.perf_counter (wall time, the default) or time.thread_time (this thread's CPU time: time slices
    given to other jobs on a loaded machine do not count)."""

    def __init__(self, clock=time.perf_counter):
        self._flush = np.ones(FLUSH_BYTES // 8, np.float64)
        self.clock = clock

    def flush(self) -> None:
        """Evict caches by reading and writing a buffer larger than the last-level cache."""
        self._flush += 1.0

    def sample(self, fn, cache: str) -> float:
        """Seconds for one call of fn: warm = in the steady state of repeated calls (after WARMUP_MIN to
        WARMUP_CALLS warm-up calls, see above; mean of repeats for short calls), cold = right after a
        cache flush."""
        clock = self.clock
        if cache == "cold":
            self.flush()
            t = clock()
            fn()
            return clock() - t
        # one warm-up call is not enough here: after another method's 64 MB flush, a 2 MB layout took
        # 5-10 calls to reach its steady time (Alex-8 int8 blocks: 586, 462, 432, ... 175 us, then ~100)
        start, calls = clock(), 0
        while calls < WARMUP_MIN or calls < WARMUP_CALLS and clock() - start < WARMUP_S:
            fn()
            calls += 1
        per_call = (clock() - start) / calls
        reps = int(min(10, max(1, 1e-3 / max(per_call, 1e-9))))
        t = clock()
        for _ in range(reps):
            fn()
        return (clock() - t) / reps


def interleaved_medians(timer: Timer, methods: dict, rounds: int, caches=("warm", "cold")) -> dict:
    """{(method, cache): median microseconds} over `rounds` rounds; each round visits every method
    once per cache in a rotated order, so slow drifts of a shared machine hit all methods alike."""
    names = list(methods)
    samples = {(m, c): [] for m in names for c in caches}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            for cache in caches:
                samples[(name, cache)].append(timer.sample(methods[name], cache))
    return {key: float(np.median(v)) * 1e6 for key, v in samples.items()}


def _ort_session(ort, model, threads: int, x: np.ndarray):
    """An onnxruntime CPU session of `model` (IR version 8) on `threads` threads, and its feed for input x."""
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess, {"x": x.reshape(1, -1) if x.ndim == 1 else x}
