/* float32 sparse kernels of the runtime's fp32 mode, in C (part of the _lut extension; see kernels.py).

Each function performs exactly the float32 operations of its numba twin in kernels.py, in the same
order (a product, then a sum; never a fused multiply-add: built with -ffp-contract=off), so both give
bit-identical outputs and the numba kernels stay the portable path.

Layouts (built in layouts.py): entries are 16-bit, the codebook index in the low `bits` bits.
  panel: ptr[p * (rows + 1) + i] .. ptr[p * (rows + 1) + i + 1] are row i's entries in column panel p,
    each holding the column offset inside the panel (width columns) in its high bits.
  csc: col_ptr[b * (cols + 1) + j] .. + 1 are column j's entries in row block b (rows row_start[b] ..
    row_start[b + 1]); each holds the row step from the previous entry (the first from row_start[b] - 1).
*/
#include <stdint.h>
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define INLINE static inline __attribute__((always_inline))

/* y[0 : 8 nv] += sum over entries[a:b] of codebook[code] * xt[col, 0 : 8 nv]; x points at the panel's
   first column at the tile's first lane, n is xt's row length. nv is a constant at every call. */
AVX2 INLINE void panel_tile(const uint16_t *entries, int32_t a, int32_t b, const float *codebook, int bits,
                            int mask, const float *x, int64_t n, float *y, const int nv) {
    __m256 acc[8];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < nv; v++) acc[v] = _mm256_setzero_ps();
    for (int32_t k = a; k < b; k++) {
        uint32_t e = entries[k];
        __m256 w = _mm256_set1_ps(codebook[e & mask]);
        const float *xr = x + (int64_t)(e >> bits) * n;
        _Pragma("GCC unroll 8")
        for (int v = 0; v < nv; v++) acc[v] = _mm256_add_ps(acc[v], _mm256_mul_ps(w, _mm256_loadu_ps(xr + 8 * v)));
    }
    _Pragma("GCC unroll 8")
    for (int v = 0; v < nv; v++) _mm256_storeu_ps(y + 8 * v, _mm256_add_ps(_mm256_loadu_ps(y + 8 * v), acc[v]));
}

/* yt[r0:r1] += rows r0..r1 of W xt for the panel layout; n (lanes of xt and yt) a multiple of 8.
   Lanes are done in tiles of `tile` (a multiple of 8, at most 64) per pass over a panel's rows, so a
   panel's slice of xt (width x tile floats) can stay in L1; per lane the sums are those of
   kernels._panel_rows_vec, whatever the tile. */
AVX2 void dc_panel_matmat_f32(const int32_t *ptr, int64_t panels, int64_t rows, const uint16_t *entries,
                              const float *codebook, int bits, int64_t width, const float *xt, int64_t n,
                              float *yt, int64_t r0, int64_t r1, int64_t tile) {
    int mask = (1 << bits) - 1;
    for (int64_t p = 0; p < panels; p++) {
        const int32_t *pp = ptr + p * (rows + 1);
        const float *xp = xt + p * width * n;
        for (int64_t l0 = 0; l0 < n; l0 += tile) {
            int64_t l1 = l0 + tile < n ? l0 + tile : n;
            for (int64_t i = r0; i < r1; i++) {
                int32_t a = pp[i], b = pp[i + 1];
                if (a == b) continue;
                float *y = yt + i * n;
                int64_t l = l0;
                for (; l + 64 <= l1; l += 64) panel_tile(entries, a, b, codebook, bits, mask, xp + l, n, y + l, 8);
                if (l + 32 <= l1) { panel_tile(entries, a, b, codebook, bits, mask, xp + l, n, y + l, 4); l += 32; }
                if (l + 16 <= l1) { panel_tile(entries, a, b, codebook, bits, mask, xp + l, n, y + l, 2); l += 16; }
                if (l < l1) panel_tile(entries, a, b, codebook, bits, mask, xp + l, n, y + l, 1);
            }
        }
    }
}

/* y += W x for the column layout, columns of zero input skipped (kernels.csc_matvec, same order).
   nzcols receives the indices of the nonzero inputs (cols entries of room). With at most
   PRODUCT_TABLE codebook entries, each nonzero input's products with the codebook are formed once
   per column and looked up per entry: the same float32 products, one multiply fewer per entry. */
#define PRODUCT_TABLE 32
void dc_csc_matvec_f32(const int32_t *col_ptr, const int64_t *row_start, int64_t blocks, int64_t cols,
                       const uint16_t *entries, const float *codebook, int bits, const float *x, float *y,
                       int32_t *nzcols) {
    int mask = (1 << bits) - 1;
    int table = mask < PRODUCT_TABLE;
    float prod[PRODUCT_TABLE];
    int64_t nnz = 0;
    for (int64_t j = 0; j < cols; j++) {
        nzcols[nnz] = (int32_t)j;
        nnz += x[j] != 0.0f;
    }
    for (int64_t b = 0; b < blocks; b++) {
        const int32_t *ptr = col_ptr + b * (cols + 1);
        float *yb = y + row_start[b] - 1;
        for (int64_t q = 0; q < nnz; q++) {
            int32_t j = nzcols[q];
            float xj = x[j];
            const uint16_t *e = entries + ptr[j], *end = entries + ptr[j + 1];
            float *yr = yb;
            if (table) {
                for (int c = 0; c <= mask; c++) prod[c] = codebook[c] * xj;
                for (; e + 2 <= end; e += 2) {
                    uint32_t e0 = e[0], e1 = e[1];
                    yr += e0 >> bits;
                    *yr += prod[e0 & mask];
                    yr += e1 >> bits;
                    *yr += prod[e1 & mask];
                }
                if (e < end) {
                    yr += e[0] >> bits;
                    *yr += prod[e[0] & mask];
                }
                continue;
            }
            for (; e + 2 <= end; e += 2) {
                uint32_t e0 = e[0], e1 = e[1];
                yr += e0 >> bits;
                *yr += codebook[e0 & mask] * xj;
                yr += e1 >> bits;
                *yr += codebook[e1 & mask] * xj;
            }
            if (e < end) {
                yr += e[0] >> bits;
                *yr += codebook[e[0] & mask] * xj;
            }
        }
    }
}
