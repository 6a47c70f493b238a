"""What the int8/int16 layouts share: the 32-entry chunk padding, the batch step and cache-line aligned
buffers."""

from __future__ import annotations

import numpy as np

CHUNK = 32
BATCH_BLOCK = 64  # samples per call of the batched block kernel


def padded(n: int) -> int:
    """n rounded up to whole 32-entry chunks."""
    return -(-n // CHUNK) * CHUNK


def aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an `align`-byte boundary (a cache line)."""
    count = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(count * itemsize + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + count * itemsize].view(dtype).reshape(shape)

