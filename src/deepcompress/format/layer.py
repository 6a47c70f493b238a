"""One weight-shared, pruned layer as the .dcz format stores it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KIND_NDIM = {"fc": 2, "conv": 4}  # PyTorch weight shapes: (out, in) and (out, in, kh, kw)
MAX_INDEX_BITS = 8
MAX_GAP_BITS = 8
MAX_LAYER_ELEMENTS = (1 << 32) - 1  # counts are stored as u32
VALUE_TYPES = {"f32": np.float32, "f16": np.float16}  # how a file stores codebook and bias values
F16_MAX = float(np.finfo(np.float16).max)  # 65504


class LayerError(ValueError):
    """A QuantizedLayer's fields are inconsistent; `problems` lists each one."""

    def __init__(self, name, problems: list[str]):
        self.problems = problems
        super().__init__(f"layer {name!r}: " + "; ".join(problems))


def matrix_shape(shape) -> tuple[int, int]:
    """The 2-D view (rows, cols) = (shape[0], product of the rest) the format indexes weights in."""
    return int(shape[0]), math.prod(int(d) for d in shape[1:])


def bits_for(count: int) -> int:
    """The smallest index width (at least 1) that can address `count` codebook entries."""
    return max(1, (max(count, 1) - 1).bit_length())


def stored_values(values: np.ndarray, value_dtype: str) -> np.ndarray:
    """float32 `values` as the file stores them, as float32: unchanged for "f32", rounded to the nearest
    float16 (ties to even) for "f16", where a finite value with |x| >= 65520 becomes infinite."""
    with np.errstate(over="ignore"):
        return values.astype(VALUE_TYPES[value_dtype]).astype(np.float32)


@dataclass(frozen=True)
class CscView:
    """A layer's stored entries as compressed sparse columns of its 2-D view: column c's entries are
    indptr[c] .. indptr[c + 1] - 1, at rows `rows` (ascending within a column) with codebook indices
    `codes`."""

    shape: tuple[int, int]
    indptr: np.ndarray
    rows: np.ndarray
    codes: np.ndarray
    codebook: np.ndarray


@dataclass(frozen=True)
class PeSlices:
    """EIE's interleaved CSC as a view of a layer's entries (EIE s.III-B): row r belongs to PE r mod N at
    local row r div N; within a column, each PE's entries keep the file's (ascending row) order. Arrays
    are per entry, in the layer's CSC order."""

    csc: CscView
    num_pes: int

    @property
    def pe(self) -> np.ndarray:
        """The PE holding each entry."""
        return self.csc.rows % self.num_pes

    @property
    def local_rows(self) -> np.ndarray:
        """Each entry's row within its PE's slice of the matrix."""
        return self.csc.rows // self.num_pes


@dataclass(eq=False)
class QuantizedLayer:
    """A pruned, weight-shared layer.

    `positions` are the sorted flat indices of the nonzero weights in CSC order of the 2-D view
    (rows, cols) = matrix_shape(shape): position p is row p % rows, column p // rows, i.e. columns in
    turn, rows ascending within a column. Weight at positions[i] is codebook[indices[i]].
    `index_bits` (1..8) is the width of a codebook index; `gap_bits` (1..8) that of a relative index.
    `value_dtype` says how the file stores codebook and bias values: "f32" or "f16" (format version 2).
    With "f16", construction rounds codebook and bias to float16 (kept as float32 arrays), so the layer
    holds exactly what a reader decodes; a finite value that would round to infinity is refused.
    Construction checks consistency and raises LayerError (a ValueError). In memory a dim may be 0 (an
    empty matrix the runtime can still run); a file stores only layers whose dims are all >= 1.
    """

    name: str
    kind: str
    shape: tuple
    codebook: np.ndarray
    positions: np.ndarray
    indices: np.ndarray
    bias: np.ndarray | None = None
    index_bits: int | None = None
    gap_bits: int = 5
    value_dtype: str = "f32"

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        if not isinstance(self.value_dtype, str) or self.value_dtype not in VALUE_TYPES:
            raise LayerError(self.name, [f"value_dtype {self.value_dtype!r}: expected one of "
                                         f"{', '.join(map(repr, VALUE_TYPES))}"])
        self.codebook = np.ascontiguousarray(self.codebook, dtype=np.float32).reshape(-1)
        self.positions = np.ascontiguousarray(self.positions, dtype=np.int64).reshape(-1)
        indices = np.asarray(self.indices).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.codebook.size):
            raise LayerError(self.name, [f"codebook indices must be in [0, {self.codebook.size})"])
        self.indices = indices.astype(np.uint8)
        if self.bias is not None:
            self.bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
        self._round_values()
        if self.index_bits is None:
            self.index_bits = bits_for(self.codebook.size)
        self.index_bits, self.gap_bits = int(self.index_bits), int(self.gap_bits)
        self._check()

    def _round_values(self) -> None:
        """Round codebook and bias to the stored type; LayerError if a finite value overflows it."""
        problems = []
        for field in ("codebook", "bias"):
            values = getattr(self, field)
            if values is None or self.value_dtype == "f32":
                continue
            rounded = stored_values(values, self.value_dtype)
            over = np.isfinite(values) & ~np.isfinite(rounded)
            if over.any():
                problems.append(f"{field} value {values[over][0]:g} is outside float16's range "
                                f"(|x| <= {F16_MAX:g}); store values as f32")
            setattr(self, field, rounded)
        if problems:
            raise LayerError(self.name, problems)

    def _check(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not self.name or len(self.name.encode()) > 65535:
            problems.append("name must be a nonempty string of at most 65535 UTF-8 bytes")
        if KIND_NDIM.get(self.kind) != len(self.shape):
            problems.append(f"kind {self.kind!r} with shape {self.shape}: expected 'fc' with 2 dims "
                            "or 'conv' with 4")
        elif min(self.shape) < 0 or self.size > MAX_LAYER_ELEMENTS:
            problems.append(f"shape {self.shape}: dims must be >= 0 and total at most {MAX_LAYER_ELEMENTS}")
        if not 1 <= self.index_bits <= MAX_INDEX_BITS or self.codebook.size > (1 << self.index_bits):
            problems.append(f"index_bits {self.index_bits}: must be 1..8 and address all "
                            f"{self.codebook.size} codebook entries")
        if not 1 <= self.gap_bits <= MAX_GAP_BITS:
            problems.append(f"gap_bits {self.gap_bits}: must be 1..8")
        if not np.all(np.isfinite(self.codebook)):
            problems.append("codebook has a NaN or infinite entry")
        if self.positions.size != self.indices.size:
            problems.append(f"{self.positions.size} positions but {self.indices.size} indices")
        if self.positions.size and (np.any(np.diff(self.positions) <= 0) or self.positions[0] < 0
                                    or self.positions[-1] >= self.size):
            problems.append(f"positions must be strictly increasing and within [0, {self.size})")
        if self.bias is not None and self.shape and self.bias.size != self.shape[0]:
            problems.append(f"bias must hold {self.shape[0]} finite values, got {self.bias.size}")
        elif self.bias is not None and not np.all(np.isfinite(self.bias)):
            problems.append("bias has a NaN or infinite entry")
        if problems:
            raise LayerError(self.name, problems)

    @property
    def size(self) -> int:
        """Number of weights, zeros included."""
        return math.prod(self.shape)

    @property
    def nnz(self) -> int:
        """Number of stored (nonzero) weights."""
        return int(self.positions.size)

    @property
    def matrix_shape(self) -> tuple[int, int]:
        """The 2-D view (rows, cols) = (outputs, inputs x kernel) that positions index."""
        return matrix_shape(self.shape)

    @property
    def density(self) -> float:
        """Stored entries over all weights (0 for an empty shape)."""
        return self.nnz / self.size if self.size else 0.0

    def rows_cols(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column (int64) of every stored entry in the 2-D view, in the file's CSC order."""
        col, row = np.divmod(self.positions, self.matrix_shape[0])
        return row, col

    def to_csc(self) -> CscView:
        """The stored entries as compressed sparse columns (a view of positions and indices, no copy of
        the codes)."""
        rows, cols = self.matrix_shape
        row, col = self.rows_cols()
        indptr = np.zeros(cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(col, minlength=cols), out=indptr[1:])
        return CscView((rows, cols), indptr, row, self.indices, self.codebook)

    def interleaved(self, num_pes: int) -> "PeSlices":
        """EIE's interleaving of the rows over `num_pes` PEs as a view of the stored entries (see PeSlices)."""
        if num_pes < 1:
            raise ValueError(f"need at least one PE, got {num_pes}")
        return PeSlices(self.to_csc(), int(num_pes))

    def values(self) -> np.ndarray:
        """The float32 value of every stored entry (codebook[indices]); may hold zeros, see docs/FORMAT.md."""
        return self.codebook[self.indices]

    def to_dense(self) -> np.ndarray:
        """The float32 weight array of `shape`, zeros where pruned."""
        rows, cols = self.matrix_shape
        dense = np.zeros(rows * cols, dtype=np.float32)
        row, col = self.rows_cols()
        dense[row * cols + col] = self.values()
        return dense.reshape(self.shape)

    @classmethod
    def from_labels(cls, name: str, kind: str, labels, codebook, *, bias=None, index_bits: int | None = None,
                    gap_bits: int = 5, value_dtype: str = "f32") -> "QuantizedLayer":
        """Build from weight sharing's output: `labels` has the weight's shape and holds each weight's
        codebook index, or -1 where the weight is pruned. Every label >= 0 is stored, even one whose
        centroid is 0."""
        labels = np.asarray(labels)
        rows, cols = matrix_shape(labels.shape)
        csc = labels.reshape(rows, cols).T.reshape(-1)
        positions = np.flatnonzero(csc >= 0)
        return cls(name, kind, labels.shape, codebook, positions, csc[positions], bias, index_bits, gap_bits,
                   value_dtype)

    @classmethod
    def from_rowmajor(cls, name: str, shape, positions, indices, codebook, *, kind: str | None = None,
                      bias=None, index_bits: int | None = None) -> "QuantizedLayer":
        """Build from flat row-major positions into `shape`'s 2-D view (unique, any order) and one codebook
        index per position; kind defaults to fc for 2-D shapes and conv for 4-D ones."""
        shape = tuple(int(d) for d in shape)
        rows, cols = matrix_shape(shape)
        pos = np.asarray(positions)
        idx = np.asarray(indices)
        if pos.ndim != 1 or idx.shape != pos.shape:
            raise LayerError(name, [f"positions and indices must be 1-D of equal length, got {pos.shape} "
                                    f"and {idx.shape}"])
        if pos.size and not (np.issubdtype(pos.dtype, np.integer) and np.issubdtype(idx.dtype, np.integer)):
            raise LayerError(name, [f"positions and indices must be integers, got {pos.dtype} and {idx.dtype}"])
        pos = pos.astype(np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= rows * cols):
            raise LayerError(name, [f"a position lies outside the {rows}x{cols} matrix"])
        row, col = np.divmod(pos, cols) if cols else (pos, pos)
        csc = col * rows + row
        order = np.argsort(csc, kind="stable")
        if csc.size > 1 and np.any(np.diff(csc[order]) == 0):
            raise LayerError(name, ["positions repeat"])
        kind = kind or {2: "fc", 4: "conv"}.get(len(shape), "fc")
        return cls(name, kind, shape, codebook, csc[order], idx.astype(np.int64)[order], bias, index_bits)

    @classmethod
    def from_dense(cls, name: str, kind: str, weight, codebook, *, bias=None, index_bits: int | None = None,
                   gap_bits: int = 5, value_dtype: str = "f32") -> "QuantizedLayer":
        """Build from a dense weight array whose every nonzero equals some codebook entry exactly (the
        entry as given; with value_dtype "f16" the layer then rounds codebook and bias to float16)."""
        weight = np.asarray(weight, dtype=np.float32)
        codebook = np.asarray(codebook, dtype=np.float32).reshape(-1)
        rows, cols = matrix_shape(weight.shape)
        csc = weight.reshape(rows, cols).T.reshape(-1)
        positions = np.flatnonzero(csc)
        values = csc[positions]
        order = np.argsort(codebook, kind="stable")
        slot = np.clip(np.searchsorted(codebook[order], values), 0, max(codebook.size - 1, 0))
        if values.size and (codebook.size == 0 or np.any(codebook[order][slot] != values)):
            raise ValueError(f"layer {name!r}: a nonzero weight is not exactly a codebook entry")
        indices = order[slot] if values.size else np.zeros(0, np.uint8)
        return cls(name, kind, weight.shape, codebook, positions, indices, bias, index_bits, gap_bits, value_dtype)

    def equals(self, other: "QuantizedLayer") -> bool:
        """True when every field is bit-for-bit the same."""
        def same(a, b):
            if a is None or b is None:
                return a is None and b is None
            return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        return (self.name, self.kind, self.shape, self.index_bits, self.gap_bits, self.value_dtype) == \
            (other.name, other.kind, other.shape, other.index_bits, other.gap_bits, other.value_dtype) and \
            all(same(getattr(self, f), getattr(other, f)) for f in ("codebook", "positions", "indices", "bias"))
