"""What the int8/int16 layouts share: the 32-entry chunk padding and the sizes padded with it, the int8-only
check, the batch step and cache-line aligned buffers."""

from __future__ import annotations

import numpy as np

CHUNK = 32
BATCH_BLOCK = 64  # samples per call of the batched block kernel


def padded(n: int) -> int:
    """n rounded up to whole 32-entry chunks."""
    return -(-n // CHUNK) * CHUNK


class PaddedSizes:
    """padded_in and acc_rows of a layout with a `shape` (rows, cols): both padded to whole chunks."""

    @property
    def padded_in(self) -> int:
        """Length of the padded input."""
        return padded(self.shape[1])

    @property
    def acc_rows(self) -> int:
        """Length of the integer sums buffer."""
        return padded(self.shape[0])


def check_int8(precision: str, kind: str) -> None:
    """ValueError unless `precision` is int8 (the `kind` layout has int8 kernels only)."""
    if precision != "int8":
        raise ValueError(f"the {kind} layout is int8 only")


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary (a cache line)."""
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(count * itemsize + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + count * itemsize].view(dtype).reshape(shape)

