/* int8 sparse column kernel of the runtime's int8 mode (part of the _lut extension; intkernels.py binds it).

Layout 'csc-abs' (intcsc.AbsCscLayout): the rows are cut into blocks of block_rows = 2**(16 - code_bits)
rows (4096 for a 16-entry codebook); in block b, column j's nonzeros are the 16-bit entries
entries[col_ptr[b * (cols + 1) + j] .. col_ptr[b * (cols + 1) + j + 1]], each holding the row's offset in
the block in its high 16 - code_bits bits and the codebook index in its low code_bits bits (4 to 8). No padding
entries and no chain of row steps: each entry is independent of the one before it.

acc[r] = sum over j with x[j] != 0 of table[code] * x[j] exactly (int32; the caller bounds the columns
so that no sum overflows), the same integers as intportable.csc_abs_portable. Per visited column the
16 products table[c] * x[j] are formed once (one vpmulld pair), so an entry costs a load, a table load
and an add into the block's int32 sums (16 KB: L1): about 6 instructions, where the fp32 column kernel
(_spmm.c) also carries each row from the entry before. The entries of the nonzero column CSC8_AHEAD
ahead are prefetched: a skipped column breaks the hardware prefetcher's stream, and when other work has
evicted the entries (the benchmark's interleaved methods) that paid on the layers whose entries do not
fit L2 (VGG-6, kernel alone, thread CPU time, load 6: 1243 -> 954 us and 1503 -> 1269 us in two runs;
Alex-6 1603 -> 1479 us and 1224 -> 1182 us); with the entries in cache it made no measurable difference.
*/
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))
#define CSC8_AHEAD 4   /* nonzero columns ahead whose entries are prefetched */
#define CSC8_LINES 24  /* at most this many 64-byte lines of a column prefetched */

static inline void prefetch_column(const uint16_t *entries, const int32_t *ptr, int32_t j) {
    const char *p = (const char *)(entries + ptr[j]), *end = (const char *)(entries + ptr[j + 1]);
    for (int i = 0; i < CSC8_LINES && p < end; i++, p += 64) __builtin_prefetch(p, 0, 3);
}

/* nzcols[0 : n] = the indices of the nonzero entries of x[0 : cols] (32 at a time); returns n. */
AVX2 static int64_t nonzero_columns(const int8_t *x, int64_t cols, int32_t *nzcols) {
    int64_t n = 0, j = 0;
    for (; j + 32 <= cols; j += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + j));
        uint32_t m = ~(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_setzero_si256()));
        for (; m; m &= m - 1) nzcols[n++] = (int32_t)(j + __builtin_ctz(m));
    }
    for (; j < cols; j++) {
        nzcols[n] = (int32_t)j;
        n += x[j] != 0;
    }
    return n;
}

/* prod[c] = table[c] * xj for the 2**code_bits codes (16 at a time with AVX2). */
AVX2 static inline void products(const int8_t *table, int ntab, int32_t xj, int32_t *prod) {
    __m256i xv = _mm256_set1_epi32(xj);
    for (int c = 0; c < ntab; c += 16) {
        __m128i t = _mm_loadu_si128((const __m128i *)(table + c));
        _mm256_storeu_si256((__m256i *)(prod + c), _mm256_mullo_epi32(_mm256_cvtepi8_epi32(t), xv));
        _mm256_storeu_si256((__m256i *)(prod + c + 8),
                            _mm256_mullo_epi32(_mm256_cvtepi8_epi32(_mm_srli_si128(t, 8)), xv));
    }
}

/* acc[0 : rows] = W x for the csc-abs layout (code_bits 4..8); table has 2**code_bits int8 weights (the
   quantized codebook, zero past it); nzcols: room for cols indices. */
AVX2 void dc_csc8_avx2(const int32_t *col_ptr, int64_t blocks, int64_t cols, int64_t rows,
                       const uint16_t *entries, const int8_t *table, int code_bits, const int8_t *x,
                       int32_t *nzcols, int32_t *acc) {
    int64_t n = nonzero_columns(x, cols, nzcols);
    memset(acc, 0, rows * sizeof(int32_t));
    const int mask = (1 << code_bits) - 1, ntab = mask + 1;
    const int64_t block_rows = (int64_t)1 << (16 - code_bits);
    int32_t prod[256] __attribute__((aligned(32)));
    for (int64_t b = 0; b < blocks; b++) {
        const int32_t *ptr = col_ptr + b * (cols + 1);
        int32_t *a = acc + b * block_rows;
        for (int64_t q = 0; q < n && q < CSC8_AHEAD; q++) prefetch_column(entries, ptr, nzcols[q]);
        for (int64_t q = 0; q < n; q++) {
            if (q + CSC8_AHEAD < n) prefetch_column(entries, ptr, nzcols[q + CSC8_AHEAD]);
            int32_t j = nzcols[q];
            products(table, ntab, x[j], prod);
            const uint16_t *e = entries + ptr[j], *end = entries + ptr[j + 1];
            for (; e + 4 <= end; e += 4) {
                uint32_t e0 = e[0], e1 = e[1], e2 = e[2], e3 = e[3];
                a[e0 >> code_bits] += prod[e0 & mask];
                a[e1 >> code_bits] += prod[e1 & mask];
                a[e2 >> code_bits] += prod[e2 & mask];
                a[e3 >> code_bits] += prod[e3 & mask];
            }
            for (; e < end; e++) a[*e >> code_bits] += prod[*e & mask];
        }
    }
}
