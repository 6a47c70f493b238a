"""Explicit vector code for the batched panel kernel, written as numba intrinsics in portable LLVM IR.

numba's own loops over the batch kept the per-row accumulators in memory and paid a loop set-up with
run-time alias checks for every few nonzeros. Here one row segment's accumulators are `nvec` vectors of
8 float32 held in registers across all of the segment's nonzeros. The IR uses only generic LLVM vector
types (no target intrinsics), so it compiles to AVX, SSE or NEON as the host allows.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(ir.FloatType(), LANES)


def _vector_at(builder, base, offset: int):
    """Pointer to the 8 floats at base + offset, typed as one vector."""
    return builder.bitcast(builder.gep(base, [ir.Constant(_I64, offset)]), _VEC.as_pointer())


def _splat(builder, value):
    undef = ir.Constant(_VEC, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _make_row_block(nvec: int):
    """An intrinsic adding one panel row segment times xt to nvec*8 consecutive lanes of yt."""

    @intrinsic
    def row_block(typingctx, entries, start, stop, codebook, bits, xt, xbase, lane0, yt, yoff):
        sig = types.void(entries, types.int64, types.int64, codebook, types.int64, xt, types.int64,
                         types.int64, yt, types.int64)

        def codegen(context, builder, signature, args):
            ent, start_v, stop_v, cb, bits_v, x, xbase_v, lane0_v, y, yoff_v = args
            arrays = [context.make_array(signature.args[i])(context, builder, v)
                      for i, v in ((0, ent), (3, cb), (5, x), (8, y))]
            ent_p, cb_p, x_p, y_p = (a.data for a in arrays)
            row_len = cgutils.unpack_tuple(builder, arrays[2].shape, 2)[1]
            mask = builder.sub(builder.shl(ir.Constant(_I64, 1), bits_v), ir.Constant(_I64, 1))
            accs = [cgutils.alloca_once_value(builder, ir.Constant(_VEC, [0.0] * LANES)) for _ in range(nvec)]
            step = ir.Constant(_I64, 1)
            with cgutils.for_range_slice(builder, start_v, stop_v, step, inc=True) as (k, _):
                e = builder.zext(builder.load(builder.gep(ent_p, [k])), _I64)
                w = _splat(builder, builder.load(builder.gep(cb_p, [builder.and_(e, mask)])))
                col = builder.add(xbase_v, builder.lshr(e, bits_v))
                xrow = builder.gep(x_p, [builder.add(builder.mul(col, row_len), lane0_v)])
                for v, acc in enumerate(accs):
                    xv = builder.load(_vector_at(builder, xrow, v * LANES), align=4)
                    builder.store(builder.fadd(builder.load(acc), builder.fmul(w, xv)), acc)
            yrow = builder.gep(y_p, [yoff_v])
            for v, acc in enumerate(accs):
                ptr = _vector_at(builder, yrow, v * LANES)
                builder.store(builder.fadd(builder.load(ptr, align=4), builder.load(acc)), ptr, align=4)
            return context.get_dummy_value()

        return sig, codegen

    return row_block


# yt[yoff : yoff + 8*nvec] += sum over entries[start:stop] of codebook[code] * xt[xbase + col, lane0 : ...]
row_block8 = _make_row_block(8)
row_block4 = _make_row_block(4)
row_block2 = _make_row_block(2)
row_block1 = _make_row_block(1)
