/* The 64-row block kernels of _lut.c (layouts 'blocks' and 'quads'), included once per instruction set
with BK_TARGET (the target attribute), BK_MAC(acc, x, w) (acc + four u8 x s8 products per int32 lane:
vpmaddubsw + vpmaddwd on AVX2, exact since each pair is at most 2 * 127 * 127; vpdpbusd on AVX-512 VNNI)
and BK_NAME(name) (the suffixed function name) defined. Not a header to include anywhere else. */
#if !defined(BK_TARGET) || !defined(BK_MAC) || !defined(BK_NAME)
#error "_lut_blocks.h needs BK_TARGET, BK_MAC and BK_NAME (see _lut.c)"
#endif

/* Sums of a 64-row block: acc[v] += (4-column quads q_v of weights) . (|x| quad xq), four int8
   products per int32 lane (BK_MAC). */
BK_TARGET INLINE void BK_NAME(quad_step)(__m256i *acc, const int8_t *pa, const int8_t *pb, const int8_t *pc,
                                         const int8_t *pd, __m256i xq, __m256i xs, const int neg) {
    _Pragma("GCC unroll 8")
    for (int h = 0; h < 2; h++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(pa + 32 * h));
        __m256i b = _mm256_loadu_si256((const __m256i *)(pb + 32 * h));
        __m256i c = _mm256_loadu_si256((const __m256i *)(pc + 32 * h));
        __m256i d = _mm256_loadu_si256((const __m256i *)(pd + 32 * h));
        __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
        __m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
        __m256i q[4] = {_mm256_unpacklo_epi16(ab_lo, cd_lo), _mm256_unpackhi_epi16(ab_lo, cd_lo),
                        _mm256_unpacklo_epi16(ab_hi, cd_hi), _mm256_unpackhi_epi16(ab_hi, cd_hi)};
        _Pragma("GCC unroll 8")
        for (int v = 0; v < 4; v++) {
            __m256i wq = neg ? _mm256_sign_epi8(q[v], xs) : q[v];
            acc[4 * h + v] = BK_MAC(acc[4 * h + v], xq, wq);
        }
    }
}

/* out[64 rb : 64 rb + 64] for row blocks rb0 <= rb < rb1 (dc_blocks8_*) */
BK_TARGET INLINE void BK_NAME(blocks_pass)(const int8_t *w, int64_t rb0, int64_t rb1, int64_t cols,
                                           const int32_t *idx, const uint32_t *xa4, const uint32_t *xs4,
                                           int64_t groups, int32_t *out, const int neg) {
    for (int64_t rb = rb0; rb < rb1; rb++) {
        const int8_t *base = w + rb * cols * 64;
        __m256i acc[8];
        _Pragma("GCC unroll 8")
        for (int v = 0; v < 8; v++) acc[v] = _mm256_setzero_si256();
        for (int64_t g = 0; g < groups; g++) {
            const int32_t *j = idx + 4 * g;
            /* the visited columns skip around: the hardware prefetcher does not follow them */
            _Pragma("GCC unroll 4")
            for (int i = 0; i < 4; i++)
                _mm_prefetch((const char *)(base + (int64_t)j[4 * PREFETCH_GROUPS + i] * 64), _MM_HINT_T0);
            BK_NAME(quad_step)(acc, base + (int64_t)j[0] * 64, base + (int64_t)j[1] * 64, base + (int64_t)j[2] * 64,
                      base + (int64_t)j[3] * 64, _mm256_set1_epi32((int32_t)xa4[g]),
                      _mm256_set1_epi32((int32_t)xs4[g]), neg);
        }
        /* quads came out as rows [0-3 | 16-19], [4-7 | 20-23], [8-11 | 24-27], [12-15 | 28-31] of each 32 */
        int32_t *o = out + rb * 64;
        _Pragma("GCC unroll 8")
        for (int h = 0; h < 2; h++) {
            __m256i *a = acc + 4 * h;
            __m256i *p = (__m256i *)(o + 32 * h);
            _mm256_storeu_si256(p, _mm256_permute2x128_si256(a[0], a[1], 0x20));
            _mm256_storeu_si256(p + 1, _mm256_permute2x128_si256(a[2], a[3], 0x20));
            _mm256_storeu_si256(p + 2, _mm256_permute2x128_si256(a[0], a[1], 0x31));
            _mm256_storeu_si256(p + 3, _mm256_permute2x128_si256(a[2], a[3], 0x31));
        }
    }
}

/* acc[s, r] = sum over j with x[s, j] != 0 of W[r, j] x[s, j] for samples s < n, int8 weights and
   inputs (|values| <= 127), in 64-row blocks: block b's column j is the 64 int8 weights at
   w + (b * cols + j) * 64 (rows padded with zeros to blocks * 64). A block's 64 sums stay in registers
   while a sample's nonzero columns go by four at a time, their bytes interleaved into (a, b, c, d)
   quads per row; every sample is done on a block before the next block, so a block's weights are read
   from memory once per call. x: n rows of xstride int8; acc: n rows of blocks * 64 int32;
   scratch: n * dc_blocks8_scratch(cols) int32. */
BK_TARGET void BK_NAME(dc_blocks8)(const int8_t *w, int64_t blocks, int64_t cols, const int8_t *x, int64_t xstride,
                                   int64_t n, int32_t *scratch, int32_t *acc) {
    int64_t len = dc_blocks8_scratch(cols);
    for (int64_t s = 0; s < n; s++) {
        int32_t *idx = scratch + s * len;
        uint32_t *xa4 = (uint32_t *)(idx + cols + 4 * PREFETCH_GROUPS + 4), *xs4 = xa4 + cols / 4 + 2;
        int neg;
        int64_t groups = nonzero_quads(x + s * xstride, cols, idx, xa4, xs4, &neg);
        xs4[cols / 4 + 1] = (uint32_t)groups;  /* the last int32 of the sample's area */
        xa4[cols / 4 + 1] = (uint32_t)neg;
    }
    for (int64_t rb = 0; rb < blocks; rb++) {
        for (int64_t s = 0; s < n; s++) {
            int32_t *idx = scratch + s * len;
            uint32_t *xa4 = (uint32_t *)(idx + cols + 4 * PREFETCH_GROUPS + 4), *xs4 = xa4 + cols / 4 + 2;
            int64_t groups = xs4[cols / 4 + 1];
            int32_t *out = acc + s * blocks * 64;
            if (xa4[cols / 4 + 1]) BK_NAME(blocks_pass)(w, rb, rb + 1, cols, idx, xa4, xs4, groups, out, 1);
            else BK_NAME(blocks_pass)(w, rb, rb + 1, cols, idx, xa4, xs4, groups, out, 0);
        }
    }
}

/* The sums of row block rb for one sample's m nonzero groups (dc_quads8_*). */
BK_TARGET INLINE void BK_NAME(quads_pass)(const int8_t *w, int64_t rb, int64_t groups, const int32_t *gidx,
                                          const uint32_t *xa4, const uint32_t *xs4, int64_t m, int32_t *out,
                                          const int neg) {
    const int8_t *base = w + rb * groups * 256;
    __m256i acc[8];
    _Pragma("GCC unroll 8")
    for (int v = 0; v < 8; v++) acc[v] = _mm256_setzero_si256();
    for (int64_t k = 0; k < m; k++) {
        const int8_t *p = base + (int64_t)gidx[k] * 256;
        const int8_t *f = base + (int64_t)gidx[k + PREFETCH_GROUPS] * 256;
        _Pragma("GCC unroll 4")
        for (int i = 0; i < 4; i++) _mm_prefetch((const char *)(f + 64 * i), _MM_HINT_T0);
        __m256i xq = _mm256_set1_epi32((int32_t)xa4[k]), xs = _mm256_set1_epi32((int32_t)xs4[k]);
        _Pragma("GCC unroll 8")
        for (int v = 0; v < 8; v++) {
            __m256i wq = _mm256_loadu_si256((const __m256i *)(p + 32 * v));
            if (neg) wq = _mm256_sign_epi8(wq, xs);
            acc[v] = BK_MAC(acc[v], xq, wq);
        }
    }
    _Pragma("GCC unroll 8")
    for (int v = 0; v < 8; v++) _mm256_storeu_si256((__m256i *)(out + rb * 64 + 8 * v), acc[v]);
}

/* acc[s, r] = W x[s] for samples s < n, int8 (|values| <= 127), on 64-row blocks whose columns are
   interleaved in quads when the layout is built: block b's group g (columns 4g .. 4g + 3) is 256 bytes
   at w + (b * groups + g) * 256, row r's four weights at byte 4r. Groups whose four inputs are all 0
   are skipped. x: n rows of xstride int8 (at least 4 * groups, zero-padded); acc: n rows of
   blocks * 64 int32; scratch: n * dc_quads8_scratch(groups) int32. */
BK_TARGET void BK_NAME(dc_quads8)(const int8_t *w, int64_t blocks, int64_t groups, const int8_t *x, int64_t xstride,
                                  int64_t n, int32_t *scratch, int32_t *acc) {
    int64_t len = dc_quads8_scratch(groups);
    for (int64_t s = 0; s < n; s++) {
        int32_t *area = scratch + s * len;
        int32_t *gidx = area + 2;
        uint32_t *xa4 = (uint32_t *)(gidx + groups + PREFETCH_GROUPS), *xs4 = xa4 + groups + 2;
        int neg;
        area[0] = (int32_t)nonzero_groups(x + s * xstride, groups, gidx, xa4, xs4, &neg);
        area[1] = neg;
    }
    for (int64_t rb = 0; rb < blocks; rb++) {
        for (int64_t s = 0; s < n; s++) {
            int32_t *area = scratch + s * len;
            int32_t *gidx = area + 2;
            uint32_t *xa4 = (uint32_t *)(gidx + groups + PREFETCH_GROUPS), *xs4 = xa4 + groups + 2;
            if (area[1]) BK_NAME(quads_pass)(w, rb, groups, gidx, xa4, xs4, area[0], acc + s * blocks * 64, 1);
            else BK_NAME(quads_pass)(w, rb, groups, gidx, xa4, xs4, area[0], acc + s * blocks * 64, 0);
        }
    }
}
