/* SIMD integer kernels of the runtime's int8/int16 modes (see intportable.py for the arithmetic).

Built by pip (setup.py) as an extension module with no Python methods; intkernels.py loads it with
ctypes. Every function sets acc[r] to an exact integer sum of products, so each path (AVX2, AVX-512
VNNI) gives the same integers as the portable numba kernels. Instruction sets are chosen per function
with target attributes and at run time by the caller (dc_features), never assumed at build time.

Layouts (built in intdense.py, introwquads.py; listed in intlayouts.py):
  rows, nibble codes: row r, chunk c (32 columns) is 16 bytes at codes + r*stride + 16*c; byte i holds
    the code of column 32c+i in its low nibble and of column 32c+16+i in its high nibble.
  masks (16-entry codebooks without a zero; mstride 0: none): one bit per weight, bit i of byte i/8 of a chunk's 4 bytes
    at mask + r*mstride + 4*c is set where the weight is stored and clear where it is pruned (weight 0);
    a clear bit sets bit 7 of the code byte, for which vpshufb yields 0.
  rows, stored weights: row r is `chunks*32` int8 (or int16) weights at w + r*stride.
  rows, packed 6-bit codes (int8, VBMI): row r, chunk c is 24 bytes at codes + r*stride + 24*c holding the
    chunk's 32 codes little-endian, code i at bits 6i..6i+5.
  cols (int8): column j is coded like a row above (codes + j*stride, mask + j*mstride), or as rows_pad
    int8 weights at w + j*stride, rows_pad a multiple of 32.
  row quads (int8, batches): a row's nonzero int8 weights in quads, 4 column indices (uint16) and the
    four weights packed in a uint32; panel quads: the same within panels of at most 256 columns, each
    quad 6 uint16: its columns' byte offsets in the panel's inputs, then its weights. The batch is
    quantized, transposed (column j's inputs for 32 or 64 samples contiguous: dc_transpose8_avx2) and
    the sums come out (rows, lanes).
Inputs x are padded with zeros to chunks*32 entries.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <immintrin.h>

#define F_AVX2 1
#define F_VNNI 2
#define F_VBMI 4

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

#ifdef DC_EMULATE_AVX512
/* A test build only (tests/simde_build.py, never pip's): the AVX-512 intrinsics come from SIMDe's portable
   implementations, so the VNNI functions run, and are checked bit for bit, on a CPU with AVX2 alone. */
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define VNNI AVX2
#define VBMI AVX2
#else
/* fma as well: a function inlines only into one whose target has all its features (the AVX2 helpers) */
#define VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define VBMI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#endif

int dc_features(void) {
    int f = 0;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) f |= F_AVX2;
#ifdef DC_EMULATE_AVX512
    if (f & F_AVX2) f |= F_VNNI | F_VBMI;
#else
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) f |= F_VNNI;
    if ((f & F_VNNI) && __builtin_cpu_supports("avx512vbmi")) f |= F_VBMI;
#endif
    return f;
}

AVX2 static inline int32_t hsum32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 static inline int64_t hsum64(__m256i v) {
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi64(s, _mm_unpackhi_epi64(s, s));
    return _mm_cvtsi128_si64(s);
}

AVX2 static inline __m256i nibbles(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

/* The 32 code bytes of a chunk, bit 7 set where the mask bit is clear (pruned). */
AVX2 static inline __m256i masked_nibbles(const uint8_t *p, const uint8_t *m) {
    int32_t bits32;
    memcpy(&bits32, m, 4);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(bits32),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                         2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ULL);
    __m256i keep = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_or_si256(nibbles(p), _mm256_andnot_si256(keep, _mm256_set1_epi8((char)0x80)));
}

/* Code bytes of chunk c of a coded vector (nibble codes, optional mask). */
AVX2 static inline __m256i codes32(const uint8_t *v, const uint8_t *mv, int64_t c) {
    return mv ? masked_nibbles(v + 16 * c, mv + 4 * c) : nibbles(v + 16 * c);
}

/* int8 weights of chunk c of a vector: a table lookup on nibble codes, or a plain load. */
AVX2 static inline __m256i weights8(const uint8_t *v, const uint8_t *mv, int64_t c, int nibble, __m256i table) {
    if (nibble) return _mm256_shuffle_epi8(table, codes32(v, mv, c));
    return _mm256_loadu_si256((const __m256i *)(v + 32 * c));
}

/* One chunk's contribution to a row's int32 lanes: |x| (xa) times the weights w with x's signs, each lane
   summing four adjacent products. AVX2: vpmaddubsw's pairs stay within 2 * 127 * 127, never saturating,
   then vpmaddwd adds the pairs. VNNI: vpdpbusd does both at once on 256-bit registers (AVX512VL). */
AVX2 static inline __m256i dot_avx2(__m256i acc, __m256i xa, __m256i w, __m256i xs) {
    __m256i pairs = _mm256_maddubs_epi16(xa, _mm256_sign_epi8(w, xs));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

VNNI static inline __m256i dot_vnni(__m256i acc, __m256i xa, __m256i w, __m256i xs) {
    return _mm256_dpbusd_epi32(acc, xa, _mm256_sign_epi8(w, xs));
}

/* The body of dc_rows8_*: acc[r] = sum_j W[r, j] x[j], int8 weights and activations (|values| <= 127),
   4 rows at a time sharing each chunk's |x|, one DOT (dot_avx2 or dot_vnni) per row and chunk of the
   weights WEIGHTS(p, m, c) gives for chunk c of the row at p (mask m). */
#define ROWS8_BODY(DOT, WEIGHTS) \
    int64_t r = 0; \
    for (; r + 4 <= rows; r += 4) { \
        const uint8_t *p0 = codes + r * stride, *p1 = p0 + stride, *p2 = p1 + stride, *p3 = p2 + stride; \
        const uint8_t *m0 = mask ? mask + r * mstride : 0, *m1 = mask ? m0 + mstride : 0; \
        const uint8_t *m2 = mask ? m1 + mstride : 0, *m3 = mask ? m2 + mstride : 0; \
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0; \
        for (int64_t c = 0; c < chunks; c++) { \
            __m256i xs = _mm256_loadu_si256((const __m256i *)(x + 32 * c)); \
            __m256i xa = _mm256_abs_epi8(xs); \
            a0 = DOT(a0, xa, WEIGHTS(p0, m0, c), xs); \
            a1 = DOT(a1, xa, WEIGHTS(p1, m1, c), xs); \
            a2 = DOT(a2, xa, WEIGHTS(p2, m2, c), xs); \
            a3 = DOT(a3, xa, WEIGHTS(p3, m3, c), xs); \
        } \
        acc[r] = hsum32(a0); acc[r + 1] = hsum32(a1); acc[r + 2] = hsum32(a2); acc[r + 3] = hsum32(a3); \
    } \
    for (; r < rows; r++) { \
        const uint8_t *p0 = codes + r * stride, *m0 = mask ? mask + r * mstride : 0; \
        __m256i a0 = _mm256_setzero_si256(); \
        for (int64_t c = 0; c < chunks; c++) { \
            __m256i xs = _mm256_loadu_si256((const __m256i *)(x + 32 * c)); \
            a0 = DOT(a0, _mm256_abs_epi8(xs), WEIGHTS(p0, m0, c), xs); \
        } \
        acc[r] = hsum32(a0); \
    }

#define CODED(p, m, c) weights8(p, m, c, nibble, table)
#define CODED_SETUP \
    __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)table16)); \
    if (!mstride) mask = 0; /* no mask */

AVX2 void dc_rows8_avx2(const uint8_t *codes, int nibble, const uint8_t *mask, int64_t mstride,
                        const int8_t *table16, int64_t rows, int64_t chunks, int64_t stride,
                        const int8_t *x, int32_t *acc) {
    CODED_SETUP
    ROWS8_BODY(dot_avx2, CODED)
}

/* The same sums with VNNI: 1.15-1.29x dc_rows8_avx2's speed on a Zen 4 (EIE's nine layers, geomean 1.24x;
   benchmarks/int_paths.py). Checked bit for bit there, and through SIMDe's emulation of the intrinsics on
   machines without AVX-512 (tests/test_simd_emulated.py). Its target includes fma so that the AVX2 helpers
   (weights8, hsum32) inline: without it GCC called them once per row and chunk, and the kernel ran 0.75x
   AVX2's speed. */
VNNI void dc_rows8_vnni(const uint8_t *codes, int nibble, const uint8_t *mask, int64_t mstride,
                        const int8_t *table16, int64_t rows, int64_t chunks, int64_t stride,
                        const int8_t *x, int32_t *acc) {
    CODED_SETUP
    ROWS8_BODY(dot_vnni, CODED)
}

/* The int8 weights of packed 6-bit chunk c (layout above): vpermb copies bytes 6k..6k+7 into qword k, which
   then starts with codes 8k..8k+7; vpmultishiftqb takes byte m of qword k from bit 6m; vpermi2b looks each
   up in the 64-entry table held in two registers, reading only an index's low 6 bits (no mask needed).
   Reads 32 bytes from the chunk's 24, except in a row's last chunk (`last`), which it reads as 16 + 8
   bytes so that nothing past the array is touched. */
typedef struct { __m256i lo, hi, spread, shifts; } Packed6;

VBMI static inline __m256i packed6_weights(const uint8_t *p, int64_t c, int last, const Packed6 *t) {
    const uint8_t *q = p + 24 * c;
    __m256i raw = last ? _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                                 _mm_loadl_epi64((const __m128i *)(q + 16)), 1)
                       : _mm256_loadu_si256((const __m256i *)q);
    __m256i codes = _mm256_multishift_epi64_epi8(t->shifts, _mm256_permutexvar_epi8(t->spread, raw));
    return _mm256_permutex2var_epi8(t->lo, codes, t->hi);
}

/* The row kernel on packed 6-bit codes (codebooks of 17-64 entries, which the other paths store as int8
   weights: 0.75 byte a weight instead of 1). benchmarks/wide_codes.py measured it on a Zen 4 against the
   stored weights and the 4-bit codes. */
#define PACKED(p, m, c) ((void)(m), packed6_weights(p, c, c + 1 == chunks, &t))
VBMI void dc_rows8_vbmi(const uint8_t *codes, const int8_t *table64, int64_t rows, int64_t chunks, int64_t stride,
                        const int8_t *x, int32_t *acc) {
    int8_t spread[32], shifts[32];
    for (int i = 0; i < 32; i++) {
        spread[i] = (int8_t)(6 * (i / 8) + i % 8);
        shifts[i] = (int8_t)(6 * (i % 8));
    }
    Packed6 t = {_mm256_loadu_si256((const __m256i *)table64), _mm256_loadu_si256((const __m256i *)(table64 + 32)),
                 _mm256_loadu_si256((const __m256i *)spread), _mm256_loadu_si256((const __m256i *)shifts)};
    const uint8_t *mask = 0;
    int64_t mstride = 0;
    ROWS8_BODY(dot_vnni, PACKED)
}

/* acc[r] = sum_j W[r, j] x[j], int16 weights and activations (|values| <= 32767), int64 sums.
   Nibble codes look up the low and high weight bytes in two tables; the bytes are interleaved per
   128-bit lane, so x is read in the matching order (columns 0-7, 16-23 then 8-15, 24-31 of a chunk:
   xperm, built by the caller). vpmaddwd's pair sums are at most 2 * 32767^2 < 2^31; each is widened
   to int64 before it is added. */
AVX2 void dc_rows16_avx2(const uint8_t *codes, int nibble, const uint8_t *mask, int64_t mstride,
                         const uint8_t *tables, int64_t rows, int64_t chunks, int64_t stride,
                         const int16_t *xperm, int64_t *acc) {
    if (!mstride) mask = 0;  /* no mask */
    __m256i tlo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tables));
    __m256i thi = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tables + 16)));
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *p = codes + r * stride, *mp = mask ? mask + r * mstride : 0;
        __m256i a = _mm256_setzero_si256(), b = a;
        for (int64_t c = 0; c < chunks; c++) {
            __m256i w0, w1;
            if (nibble) {
                __m256i idx = codes32(p, mp, c);
                __m256i lo = _mm256_shuffle_epi8(tlo, idx), hi = _mm256_shuffle_epi8(thi, idx);
                w0 = _mm256_unpacklo_epi8(lo, hi);
                w1 = _mm256_unpackhi_epi8(lo, hi);
            } else {
                w0 = _mm256_loadu_si256((const __m256i *)(p + 64 * c));
                w1 = _mm256_loadu_si256((const __m256i *)(p + 64 * c + 32));
            }
            __m256i s0 = _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)(xperm + 32 * c)));
            __m256i s1 = _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(xperm + 32 * c + 16)));
            a = _mm256_add_epi64(a, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(s0)));
            b = _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s0, 1)));
            a = _mm256_add_epi64(a, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(s1)));
            b = _mm256_add_epi64(b, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(s1, 1)));
        }
        acc[r] = hsum64(_mm256_add_epi64(a, b));
    }
}

AVX2 static inline void add8(int32_t *y, __m128i v16) {
    __m256i *p = (__m256i *)y;
    _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), _mm256_cvtepi16_epi32(v16)));
}

/* acc[0:32] += |xa| wa + |xb| wb for 32 rows, xp holding the byte pair (|xa|, |xb|) in every 16-bit lane
   and wa, wb the sign-adjusted weights; the per-lane unpacks give rows 0-7, 16-23 (lo), 8-15, 24-31 (hi). */
AVX2 static inline void pair_step(int32_t *acc, __m256i xp, __m256i wa, __m256i wb) {
    __m256i lo = _mm256_maddubs_epi16(xp, _mm256_unpacklo_epi8(wa, wb));
    __m256i hi = _mm256_maddubs_epi16(xp, _mm256_unpackhi_epi8(wa, wb));
    add8(acc, _mm256_castsi256_si128(lo));
    add8(acc + 8, _mm256_castsi256_si128(hi));
    add8(acc + 16, _mm256_extracti128_si256(lo, 1));
    add8(acc + 24, _mm256_extracti128_si256(hi, 1));
}

/* acc[r] = sum over j with x[j] != 0 of W[r, j] x[j], int8, column-major weights (zero-input columns
   skipped). Two columns at a time: their weights interleaved byte-wise against the pair (|xa|, |xb|);
   the unpacks work per 128-bit lane, so a 32-row block's sums come out as rows 0-7, 16-23 (lo) and
   8-15, 24-31 (hi), stored back in row order. */
AVX2 void dc_cols8_avx2(const uint8_t *w, int nibble, const uint8_t *mask, int64_t mstride,
                        const int8_t *table16, int64_t rows_pad, int64_t stride, const int32_t *nzcols,
                        int64_t nnzc, const int8_t *x, int32_t *acc) {
    if (!mstride) mask = 0;  /* no mask */
    __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)table16));
    memset(acc, 0, rows_pad * sizeof(int32_t));
    int64_t k = 0;
    for (; k + 2 <= nnzc; k += 2) {
        int32_t ja = nzcols[k], jb = nzcols[k + 1];
        int8_t xa = x[ja], xb = x[jb];
        __m256i sa = _mm256_set1_epi8(xa), sb = _mm256_set1_epi8(xb);
        uint16_t pair = (uint16_t)((uint8_t)(xa < 0 ? -xa : xa) | ((uint16_t)(uint8_t)(xb < 0 ? -xb : xb) << 8));
        __m256i xp = _mm256_set1_epi16((int16_t)pair);
        const uint8_t *ca = w + (int64_t)ja * stride, *cb = w + (int64_t)jb * stride;
        const uint8_t *ma = mask ? mask + (int64_t)ja * mstride : 0, *mb = mask ? mask + (int64_t)jb * mstride : 0;
        for (int64_t r = 0; r < rows_pad; r += 32) {
            __m256i wa = _mm256_sign_epi8(weights8(ca, ma, r / 32, nibble, table), sa);
            __m256i wb = _mm256_sign_epi8(weights8(cb, mb, r / 32, nibble, table), sb);
            pair_step(acc + r, xp, wa, wb);
        }
    }
    if (k < nnzc) {  /* the odd column last, paired with a zero input */
        int32_t ja = nzcols[k];
        __m256i sa = _mm256_set1_epi8(x[ja]);
        __m256i xp = _mm256_set1_epi16((int16_t)(uint8_t)(x[ja] < 0 ? -x[ja] : x[ja]));
        const uint8_t *ca = w + (int64_t)ja * stride, *ma = mask ? mask + (int64_t)ja * mstride : 0;
        for (int64_t r = 0; r < rows_pad; r += 32) {
            __m256i wa = _mm256_sign_epi8(weights8(ca, ma, r / 32, nibble, table), sa);
            pair_step(acc + r, xp, wa, _mm256_setzero_si256());
        }
    }
}

#ifndef PREFETCH_GROUPS
#define PREFETCH_GROUPS 6
#endif

/* The nonzero inputs of x (cols int8) as groups of four: column indices (padded with a valid column
   whose input is 0, then PREFETCH_GROUPS more groups to prefetch past the end), |x| and x quads
   packed in int32 lanes. Returns the number of groups; *neg is set when some input is negative. */
static int64_t nonzero_quads(const int8_t *x, int64_t cols, int32_t *idx, uint32_t *xa4, uint32_t *xs4, int *neg) {
    int64_t n = 0;
    int any = 0;
    for (int64_t j = 0; j < cols; j++) {
        idx[n] = (int32_t)j;
        n += x[j] != 0;
        any |= x[j] < 0;
    }
    int64_t groups = (n + 3) / 4;
    for (int64_t k = n; k < 4 * (groups + PREFETCH_GROUPS); k++) idx[k] = n ? idx[0] : 0;
    for (int64_t g = 0; g < groups; g++) {
        uint32_t a = 0, s = 0;
        for (int i = 0; i < 4; i++) {
            int8_t v = 4 * g + i < n ? x[idx[4 * g + i]] : 0;
            a |= (uint32_t)(uint8_t)(v < 0 ? -v : v) << (8 * i);
            s |= (uint32_t)(uint8_t)v << (8 * i);
        }
        xa4[g] = a;
        xs4[g] = s;
    }
    *neg = any;
    return groups;
}

/* int32 entries of one sample's scratch area in dc_blocks8_avx2 and dc_blocks8_vnni */
int64_t dc_blocks8_scratch(int64_t cols) { return 2 * (cols + 4 * PREFETCH_GROUPS + 8); }

/* The nonzero quads of x (4 * groups int8, zero-padded): group indices (then PREFETCH_GROUPS copies of
   the last to prefetch past the end), |x| and x quads. Returns their count; *neg as in nonzero_quads. */
static int64_t nonzero_groups(const int8_t *x, int64_t groups, int32_t *gidx, uint32_t *xa4, uint32_t *xs4, int *neg) {
    int64_t m = 0;
    int any = 0;
    for (int64_t g = 0; g < groups; g++) {
        uint32_t s, a = 0;
        memcpy(&s, x + 4 * g, 4);
        for (int i = 0; i < 4; i++) {
            int8_t v = (int8_t)(s >> (8 * i));
            a |= (uint32_t)(uint8_t)(v < 0 ? -v : v) << (8 * i);
            any |= v < 0;
        }
        gidx[m] = (int32_t)g;
        xa4[m] = a;
        xs4[m] = s;
        m += s != 0;
    }
    for (int64_t k = m; k < m + PREFETCH_GROUPS; k++) gidx[k] = m ? gidx[m - 1] : 0;
    *neg = any;
    return m;
}

/* int32 entries of one sample's scratch area in dc_quads8_avx2 and dc_quads8_vnni */
int64_t dc_quads8_scratch(int64_t groups) { return 3 * (groups + PREFETCH_GROUPS) + 8; }

/* The block kernels (dc_blocks8_*, dc_quads8_*) for each instruction set: one source, two builds. */
#define BK_TARGET AVX2
#define BK_MAC(acc, x, w) _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), _mm256_set1_epi16(1)))
#define BK_NAME(name) name##_avx2
#include "_lut_blocks.h"
#undef BK_TARGET
#undef BK_MAC
#undef BK_NAME
#define BK_TARGET VNNI
#define BK_MAC(acc, x, w) _mm256_dpbusd_epi32(acc, x, w)
#define BK_NAME(name) name##_vnni
#include "_lut_blocks.h"
#undef BK_TARGET
#undef BK_MAC
#undef BK_NAME

/* acc[r * lanes + l] = sum_j W[r, j] xt[j * lanes + l] for a batch held transposed (xt: cols x lanes
   int8, lanes a multiple of 32, |values| <= 127): every row's nonzero weights in quads (zero weights
   pad a row to a multiple of 4), quad q's columns qcols[4q .. 4q + 3] and its four int8 weights packed
   in qw[q]. Per quad and 32 lanes: the four columns' inputs interleaved into per-lane quads, their
   signs flipped where the weight is negative (vpsignb), times |w| (vpmaddubsw: exact pairs, as in
   dc_rows8_avx2) and summed into int32 lanes (vpmaddwd). Lanes come out in order
   [0-3 | 16-19], [4-7 | 20-23], [8-11 | 24-27], [12-15 | 28-31] and are stored back in order. */
/* Four columns' inputs for 32 lanes (32 bytes at each of a..d) as per-lane quads, sign-adjusted
   by the weights (wv) and multiplied by |w| (wabs) into the four int32 sums of those lanes. */
AVX2 INLINE void lane_quads(__m256i *acc, const int8_t *a, const int8_t *b, const int8_t *c, const int8_t *d,
                            __m256i wv, __m256i wabs, const int neg) {
    __m256i ones = _mm256_set1_epi16(1);
    __m256i A = _mm256_loadu_si256((const __m256i *)a), B = _mm256_loadu_si256((const __m256i *)b);
    __m256i C = _mm256_loadu_si256((const __m256i *)c), D = _mm256_loadu_si256((const __m256i *)d);
    __m256i ab_lo = _mm256_unpacklo_epi8(A, B), ab_hi = _mm256_unpackhi_epi8(A, B);
    __m256i cd_lo = _mm256_unpacklo_epi8(C, D), cd_hi = _mm256_unpackhi_epi8(C, D);
    __m256i qv[4] = {_mm256_unpacklo_epi16(ab_lo, cd_lo), _mm256_unpackhi_epi16(ab_lo, cd_lo),
                     _mm256_unpacklo_epi16(ab_hi, cd_hi), _mm256_unpackhi_epi16(ab_hi, cd_hi)};
    _Pragma("GCC unroll 4")
    for (int v = 0; v < 4; v++)
        acc[v] = _mm256_add_epi32(acc[v], _mm256_madd_epi16(
            neg ? _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(qv[v], wv)) : _mm256_maddubs_epi16(qv[v], wv), ones));
}

/* The four sums of 32 lanes (lane_quads order) stored in lane order at o. */
AVX2 INLINE void store_lanes(int32_t *o, const __m256i *a) {
    __m256i *p = (__m256i *)o;
    _mm256_storeu_si256(p, _mm256_permute2x128_si256(a[0], a[1], 0x20));
    _mm256_storeu_si256(p + 1, _mm256_permute2x128_si256(a[2], a[3], 0x20));
    _mm256_storeu_si256(p + 2, _mm256_permute2x128_si256(a[0], a[1], 0x31));
    _mm256_storeu_si256(p + 3, _mm256_permute2x128_si256(a[2], a[3], 0x31));
}

#define ROWQUAD_PREFETCH 8

/* dc_rowquads8_avx2 for inputs with (neg) or without negative entries */
AVX2 INLINE void rowquads_pass(const int32_t *row_ptr, int64_t rows, const uint16_t *qcols, const uint32_t *qw,
                               const int8_t *xt, int64_t lanes, int32_t *acc, const int neg) {
    int64_t nq = row_ptr[rows];
    for (int64_t l0 = 0, two; l0 < lanes; l0 += two ? 64 : 32) {
        const int8_t *x = xt + l0;
        two = l0 + 64 <= lanes;
        for (int64_t r = 0; r < rows; r++) {
            __m256i a[8];
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 8; v++) a[v] = _mm256_setzero_si256();
            for (int32_t q = row_ptr[r]; q < row_ptr[r + 1]; q++) {
                const uint16_t *c = qcols + 4 * (int64_t)q;
                int64_t f = q + ROWQUAD_PREFETCH < nq ? q + ROWQUAD_PREFETCH : nq - 1;
                _Pragma("GCC unroll 4")
                for (int i = 0; i < 4; i++) _mm_prefetch((const char *)(x + qcols[4 * f + i] * lanes), _MM_HINT_T0);
                __m256i wv = _mm256_set1_epi32((int32_t)qw[q]), wabs = _mm256_abs_epi8(wv);
                const int8_t *p0 = x + c[0] * lanes, *p1 = x + c[1] * lanes, *p2 = x + c[2] * lanes, *p3 = x + c[3] * lanes;
                lane_quads(a, p0, p1, p2, p3, wv, wabs, neg);
                if (two) lane_quads(a + 4, p0 + 32, p1 + 32, p2 + 32, p3 + 32, wv, wabs, neg);
            }
            store_lanes(acc + r * lanes + l0, a);
            if (two) store_lanes(acc + r * lanes + l0 + 32, a + 4);
        }
    }
}

/* acc[r * lanes + l] = sum_j W[r, j] xt[j * lanes + l] for a batch held transposed (xt: cols x lanes
   int8, lanes a multiple of 32, |values| <= 127): every row's nonzero weights in quads (zero weights
   pad a row to a multiple of 4), quad q's columns qcols[4q .. 4q + 3] and its four int8 weights packed
   in qw[q]. Per quad and 32 lanes: the four columns' inputs interleaved into per-lane quads and
   multiplied by the weights with vpmaddubsw (exact pairs, as in dc_rows8_avx2) into int32 lanes
   (vpmaddwd). Inputs with a negative entry (neg != 0) take |w| as the unsigned operand and the inputs
   sign-flipped where the weight is negative (vpsignb); non-negative inputs (post-ReLU) are the unsigned
   operand themselves. A row's quads are visited once for 64 lanes (two tiles of 32 in registers), with
   the inputs of the quad ROWQUAD_PREFETCH ahead prefetched. */
AVX2 void dc_rowquads8_avx2(const int32_t *row_ptr, int64_t rows, const uint16_t *qcols, const uint32_t *qw,
                            const int8_t *xt, int64_t lanes, int neg, int32_t *acc) {
    if (neg) rowquads_pass(row_ptr, rows, qcols, qw, xt, lanes, acc, 1);
    else rowquads_pass(row_ptr, rows, qcols, qw, xt, lanes, acc, 0);
}

#define PANEL_LANES 64

/* dc_panelquads8_avx2 for inputs with (neg) or without negative entries, on 64 lanes (two) or 32 */
AVX2 INLINE void panelquads_pass(const int32_t *row_ptr, int64_t rows, int64_t panels, int64_t width,
                                 const uint16_t *recs, const int8_t *xt, int32_t *acc, const int neg, const int two) {
    for (int64_t p = 0; p < panels; p++) {
        const int8_t *x = xt + p * width * PANEL_LANES;
        const int32_t *ptr = row_ptr + p * rows;
        for (int64_t r = 0; r < rows; r++) {
            int32_t q0 = ptr[r], q1 = ptr[r + 1];
            __m256i *o = (__m256i *)(acc + r * PANEL_LANES);
            if (p && q0 == q1) continue;
            __m256i a[8];
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 8; v++) a[v] = p && (v < 4 || two) ? _mm256_loadu_si256(o + v) : _mm256_setzero_si256();
            for (int32_t q = q0; q < q1; q++) {
                const uint16_t *e = recs + 6 * (int64_t)q;
                int32_t w;
                memcpy(&w, e + 4, 4);
                __m256i wv = _mm256_set1_epi32(w), wabs = _mm256_abs_epi8(wv);
                const int8_t *p0 = x + e[0], *p1 = x + e[1], *p2 = x + e[2], *p3 = x + e[3];
                lane_quads(a, p0, p1, p2, p3, wv, wabs, neg);
                if (two) lane_quads(a + 4, p0 + 32, p1 + 32, p2 + 32, p3 + 32, wv, wabs, neg);
            }
            _Pragma("GCC unroll 8")
            for (int v = 0; v < 8; v++) if (v < 4 || two) _mm256_storeu_si256(o + v, a[v]);
        }
    }
    /* the sums were kept in lane_quads' order: put every 32 lanes back in lane order */
    for (int64_t r = 0; r < rows; r++)
        for (int64_t l0 = 0; l0 < (two ? 64 : 32); l0 += 32) {
            __m256i a[4], *o = (__m256i *)(acc + r * PANEL_LANES + l0);
            _Pragma("GCC unroll 4")
            for (int v = 0; v < 4; v++) a[v] = _mm256_loadu_si256(o + v);
            store_lanes((int32_t *)o, a);
        }
}

/* acc[r * 64 + l] = sum_j W[r, j] xt[j * 64 + l] for lanes l < `lanes` (32 or 64), the batch transposed
   as for dc_rowquads8_avx2 with a row stride of 64 lanes (xt: panels * width rows of 64 int8; acc: rows
   x 64 int32, lanes past `lanes` untouched), the columns cut into panels of `width` (at most 256)
   columns: a panel's inputs for 64 lanes (16 KB at 256) stay in L1 while every row's quads in that panel
   go by, where rowquads' random columns over the whole batch (cols x 64 bytes) come from L2. Row r's
   quads in panel p are row_ptr[p * rows + r] .. row_ptr[p * rows + r + 1]; quad q is 6 uint16 at
   recs + 6q: its four columns' byte offsets in the panel's inputs (column offset x 64, so no multiply
   per quad), then its four int8 weights. Sums stay in memory (acc) between panels. */
AVX2 void dc_panelquads8_avx2(const int32_t *row_ptr, int64_t rows, int64_t panels, int64_t width,
                              const uint16_t *recs, const int8_t *xt, int64_t lanes, int neg, int32_t *acc) {
    if (lanes > 32 && neg) panelquads_pass(row_ptr, rows, panels, width, recs, xt, acc, 1, 1);
    else if (lanes > 32) panelquads_pass(row_ptr, rows, panels, width, recs, xt, acc, 0, 1);
    else if (neg) panelquads_pass(row_ptr, rows, panels, width, recs, xt, acc, 1, 0);
    else panelquads_pass(row_ptr, rows, panels, width, recs, xt, acc, 0, 0);
}

/* One vector quantized to int8 as quantize.quantize_into does it, with the same float32 operations:
   m = max |x|, inv = 127 / m, q = clip(rint(x * inv), -127, 127); returns s_x = m / 127 in float64 (0
   for an all-zero vector, whose q is 0). For finite x: the runtime refuses NaN and infinite inputs
   before any kernel (quantize_into's own integers for them vary between its scalar and vector code). */
AVX2 static double quantize_row8(const float *x, int64_t n, int8_t *q) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 mv = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        mv = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), mv);
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float m = 0.0f;
    for (int k = 0; k < 8; k++) if (lanes[k] > m) m = lanes[k];
    for (int64_t j = i; j < n; j++) {
        float a = x[j] < 0 ? -x[j] : x[j];
        if (a > m) m = a;
    }
    if (m == 0.0f) {
        memset(q, 0, (size_t)n);
        return 0.0;
    }
    float inv = 127.0f / m;
    const __m256 vinv = _mm256_set1_ps(inv), lim = _mm256_set1_ps(127.0f), nlim = _mm256_set1_ps(-127.0f);
    for (i = 0; i + 32 <= n; i += 32) {
        __m256i w[4];
        for (int k = 0; k < 4; k++) {
            __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * k), vinv),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            w[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, nlim), lim));
        }
        /* packs work per 128-bit lane: the dword permute puts the 32 bytes back in order */
        __m256i p16a = _mm256_packs_epi32(w[0], w[1]), p16b = _mm256_packs_epi32(w[2], w[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + i), p8);
    }
    for (; i < n; i++) {
        float v = rintf(x[i] * inv);
        q[i] = (int8_t)(v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v);
    }
    return (double)m / 127;
}

/* xq[i * qstride : + cols] = int8 q_x of x[i * xstride : + cols] and scales[i] = its s_x, for i < n
   (quantize_row8; the same integers and scales as intportable.quantize_rows). */
AVX2 void dc_quantize8_avx2(const float *x, int64_t n, int64_t cols, int64_t xstride, int8_t *xq, int64_t qstride,
                            double *scales) {
    for (int64_t i = 0; i < n; i++) scales[i] = quantize_row8(x + i * xstride, cols, xq + i * qstride);
}

/* 16 x 16 bytes transposed: rows src + i * sstride (i < 16) to rows dst + j * dstride; returns the OR of
   the bytes' sign bits as a 16-bit mask. */
AVX2 static inline int transpose16(const int8_t *src, int64_t sstride, int8_t *dst, int64_t dstride) {
    __m128i r[16], t[16];
    __m128i sign = _mm_setzero_si128();
    for (int i = 0; i < 16; i++) {
        r[i] = _mm_loadu_si128((const __m128i *)(src + i * sstride));
        sign = _mm_or_si128(sign, r[i]);
    }
    for (int i = 0; i < 8; i++) {
        t[i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
        t[i + 8] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
    }
    /* t[i], t[i + 8]: columns 0-7, 8-15 of rows 2i, 2i + 1 interleaved; r[4g + i]: columns 4g .. 4g + 3
       of rows 4i .. 4i + 3; then t[4g + k]: two columns of rows 0-7 (k even) or 8-15 (k odd) */
    for (int i = 0; i < 4; i++) {
        r[i] = _mm_unpacklo_epi16(t[2 * i], t[2 * i + 1]);
        r[i + 4] = _mm_unpackhi_epi16(t[2 * i], t[2 * i + 1]);
        r[i + 8] = _mm_unpacklo_epi16(t[8 + 2 * i], t[8 + 2 * i + 1]);
        r[i + 12] = _mm_unpackhi_epi16(t[8 + 2 * i], t[8 + 2 * i + 1]);
    }
    for (int g = 0; g < 4; g++)
        for (int i = 0; i < 2; i++) {
            t[4 * g + i] = _mm_unpacklo_epi32(r[4 * g + 2 * i], r[4 * g + 2 * i + 1]);
            t[4 * g + i + 2] = _mm_unpackhi_epi32(r[4 * g + 2 * i], r[4 * g + 2 * i + 1]);
        }
    /* t[4g + 2h] and t[4g + 2h + 1]: columns 4g + 2h, 4g + 2h + 1 of rows 0-7 and of rows 8-15 */
    for (int g = 0; g < 4; g++)
        for (int h = 0; h < 2; h++) {
            __m128i a = t[4 * g + 2 * h], b = t[4 * g + 2 * h + 1];
            int c = 4 * g + 2 * h;
            _mm_storeu_si128((__m128i *)(dst + c * dstride), _mm_unpacklo_epi64(a, b));
            _mm_storeu_si128((__m128i *)(dst + (c + 1) * dstride), _mm_unpackhi_epi64(a, b));
        }
    return _mm_movemask_epi8(sign);
}

/* xt[j * lanes + i] = xq[i * xstride + j] for i < lanes (a multiple of 16) and j < cols: a batch of
   quantized rows transposed for the row-quad kernels. Returns 1 if some entry read is negative. */
AVX2 int dc_transpose8_avx2(const int8_t *xq, int64_t xstride, int64_t lanes, int64_t cols, int8_t *xt) {
    int sign = 0;
    int64_t j0 = 0;
    for (; j0 + 16 <= cols; j0 += 16)
        for (int64_t i0 = 0; i0 < lanes; i0 += 16)
            sign |= transpose16(xq + i0 * xstride + j0, xstride, xt + j0 * lanes + i0, lanes);
    for (int64_t j = j0; j < cols; j++)
        for (int64_t i = 0; i < lanes; i++) {
            int8_t v = xq[i * xstride + j];
            xt[j * lanes + i] = v;
            sign |= v < 0;
        }
    return sign != 0;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lut", "SIMD kernels, loaded with ctypes.", -1, NULL};

PyMODINIT_FUNC PyInit__lut(void) { return PyModule_Create(&module); }
