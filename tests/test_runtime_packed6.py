"""The int8 rows-packed layout (6-bit codes, AVX-512 VBMI): packing, refusals, the cost model's offer, the
numpy reference's integers on every path it runs on, and a kernel that reads nothing past its array."""

from __future__ import annotations

import numpy as np
import pytest

from deepcompress.runtime.int_fc import IntLinear
from deepcompress.runtime.intcodes import packed6_vectors
from deepcompress.runtime.intlayouts import INT_BUILDERS
from deepcompress.runtime.intpolicy import predicted_ns, runs_on
from deepcompress.runtime.nonzeros import from_dense
from deepcompress.runtime.quantize import reference_forward

from test_runtime_int import PATHS, layer, signed_inputs


def test_packed6_codes_by_hand():
    codes = np.arange(64, dtype=np.uint8).reshape(2, 32)  # every 6-bit code once
    keep = np.ones_like(codes, bool)
    keep[1, 5] = False  # pruned: the spare code, 40 (the codebook's size)
    v = packed6_vectors(codes, keep, np.arange(-20, 20, dtype=np.int8))
    assert v.storage == "packed6" and v.store.shape == (2, 24) and v.nibble == 0
    assert v.table[:40].tolist() == list(range(-20, 20)) and not v.table[40:].any()
    bits = np.unpackbits(v.store, axis=1, bitorder="little").reshape(2, 32, 6)  # code i at bits 6i..6i+5
    got = (bits * (1 << np.arange(6))).sum(-1)
    want = codes.astype(np.int64)
    want[1, 5] = 40
    assert np.array_equal(got, want)


def test_rows_packed_codebooks_paths_and_policy():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="at most 63 nonzero values and 0; this codebook has 64"):
        packed6_vectors(np.zeros((1, 32), np.uint8), np.ones((1, 32), bool), np.arange(1, 65, dtype=np.int8))
    full = packed6_vectors(np.zeros((1, 32), np.uint8), np.zeros((1, 32), bool), np.arange(-32, 32, dtype=np.int8))
    assert full.table[full.store[0, 0] & 63] == 0  # 64 values with 0: pruned weights take 0's code
    nz = layer(rng, (9, 40), 0.5, "k40")
    with pytest.raises(ValueError, match="int8 kernels only"):
        INT_BUILDERS["rows-packed"](nz, "int16")
    if "avx2" in PATHS:
        with pytest.raises(ValueError, match="runs on the portable and vbmi paths, not 'avx2'"):
            IntLinear(nz, None, "int8", "rows-packed", path="avx2")
    # offered only on the vbmi path, only for codebooks the other row layouts store as int8
    assert "rows-packed" in predicted_ns(nz, "int8", "vbmi", None)
    assert "rows-packed" not in predicted_ns(nz, "int8", "vnni", None)
    assert "rows-packed" not in predicted_ns(layer(rng, (9, 40), 0.5, "k16"), "int8", "vbmi", None)
    no_zero = from_dense(np.arange(1, 65, dtype=np.float32).reshape(1, 64), np.arange(1, 65, dtype=np.float32))
    assert "rows-packed" not in predicted_ns(no_zero, "int8", "vbmi", None)  # no code left for 0
    with pytest.raises(ValueError, match="whole 32-entry chunks"):
        packed6_vectors(np.zeros((1, 40), np.uint8), np.ones((1, 40), bool), np.arange(5, dtype=np.int8))


@pytest.mark.parametrize("shape", [(5, 64), (37, 75), (64, 200)])
def test_rows_packed_with_64_values_one_of_them_zero_equals_numpy_reference(shape):
    rng = np.random.default_rng(shape[1])
    book = np.sort(rng.uniform(-1, 1, 64)).astype(np.float32)
    book[20] = 0.0  # pruned weights take this entry's code, 20: no spare code in 64
    w = book[rng.integers(0, 64, shape)] * (rng.random(shape) < 0.6)
    nz = from_dense(w.astype(np.float32), book)
    x = signed_inputs(rng, 3, shape[1])
    ref = reference_forward(nz, None, x, "int8")
    for path in filter(lambda path: runs_on("rows-packed", path), PATHS):
        fc = IntLinear(nz, None, "int8", "rows-packed", path=path)
        assert fc.layout.vectors.storage == "packed6"
        assert np.array_equal(fc(x), ref), path
        for i in range(x.shape[0]):
            y = np.empty(shape[0], np.float32)
            fc.matvec(x[i], y)
            assert np.array_equal(y, ref[i]), (path, i)


GUARD_PAGE = """
import ctypes, mmap, sys
import numpy as np
from deepcompress.runtime import intkernels as ik, intportable as ip

page = mmap.PAGESIZE
buf = mmap.mmap(-1, 2 * page)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
if ctypes.CDLL(None).mprotect(ctypes.c_void_p(addr + page), ctypes.c_size_t(page), 0) != 0:
    sys.exit(3)  # no guard page to test against
rows, chunks = 4, 3
n = rows * 24 * chunks
store = np.frombuffer(buf, np.uint8, count=n, offset=page - n).reshape(rows, 24 * chunks)  # ends at the guard
rng = np.random.default_rng(0)
store[:] = rng.integers(0, 256, store.shape)
table = rng.integers(-127, 128, 64).astype(np.int8)
x = rng.integers(-127, 128, 32 * chunks).astype(np.int8)
acc, ref = np.zeros(rows, np.int32), np.zeros(rows, np.int64)
ik.rows8_packed_simd(store, table, chunks, x, acc)
ip.rows_packed_portable(store, table, x, ref)
print("same" if np.array_equal(acc, ref) else "differ")
"""


@pytest.mark.skipif("vbmi" not in PATHS, reason="rows-packed's kernel needs AVX-512 VBMI")
def test_rows_packed_kernel_reads_nothing_past_its_array():
    import subprocess
    import sys

    # the last chunk's 24 bytes end where a PROT_NONE page begins: a 32-byte load there would fault
    proc = subprocess.run([sys.executable, "-c", GUARD_PAGE], capture_output=True, text=True, timeout=300)
    if proc.returncode == 3:
        pytest.skip("mprotect refused a guard page here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "same"
