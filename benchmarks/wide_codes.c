#define _GNU_SOURCE
/* Would 6-bit codes decoded with AVX-512 VBMI beat storing int8 weights? The int8 row kernel
   (src/deepcompress/runtime/_lut.c) keeps a layer whose codebook has more than 16 entries (the built-in
   recipes' 5-bit FC layers: 32 centroids and the pruned weights' 0) as int8 weights, 1 byte each. 6-bit
   codes take 0.75 byte. This times one row kernel per storage, all summing with vpdpbusd 4 rows at a time:
   - stored: 32 int8 weights loaded (the runtime's dc_rows8_vnni);
   - nibble: 4-bit codes looked up with vpshufb (dc_rows8_vnni; 16-entry codebooks only, for comparison);
   - wide: 6-bit codes as 16 bytes of low nibbles and 8 bytes of high bit pairs per 32 weights, the pairs
     moved next to their nibbles by vpmultishiftqb, then vpermi2b (a 64-entry int8 table across two ymm
     registers); the first design, not built into the runtime, so its kernel is here;
   - packed: 6-bit codes packed 4 in 3 bytes (the runtime's rows-packed layout, dc_rows8_vbmi).
   The runtime's kernels come from the built extension (LIB, opened with dlopen; its Python entry point is
   never called). Random codes, random int8 inputs, thread CPU time, median of reps after warm-up calls,
   every output checked against a scalar int64 reference. Needs AVX-512 VBMI and VNNI; says so and exits 2
   without.

   cc -O2 -std=c11 -o /tmp/wide_codes benchmarks/wide_codes.c -ldl
   /tmp/wide_codes LIB ROWS COLS [REPS]   (one line per storage: name, bytes, median us, ns/weight)
   python benchmarks/wide_codes.py        builds it, runs the shapes and writes results/wide_codes.json */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

#define VBMI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#define INLINE static inline __attribute__((always_inline))

VBMI INLINE int32_t hsum32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

VBMI INLINE __m256i nibbles(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

/* the codebook and the wide kernel's shift control, as bytes (each kernel loads what it needs) */
typedef struct { int8_t table[64], ctrl[32]; } Tables;

/* byte i of the chunk's 8 high bytes' qword, rotated so bits 2i, 2i+1 land in bits 4, 5 (ctrl[i] = 2i - 4
   mod 64); or'ed onto the nibble they give the 6-bit code, looked up in the 64-entry table */
VBMI INLINE __m256i w_wide(const uint8_t *p, int64_t c, __m256i ctrl, __m256i lo, __m256i hi64) {
    const uint8_t *q = p + 24 * c;
    int64_t h;
    memcpy(&h, q + 16, 8);
    __m256i hi = _mm256_and_si256(_mm256_multishift_epi64_epi8(ctrl, _mm256_set1_epi64x(h)),
                                  _mm256_set1_epi8(0x30));
    return _mm256_permutex2var_epi8(lo, _mm256_or_si256(nibbles(q), hi), hi64);
}

VBMI void rows_wide(const uint8_t *w, int64_t stride, int64_t rows, int64_t chunks, const Tables *t,
                    const int8_t *x, int32_t *acc) {
    __m256i ctrl = _mm256_loadu_si256((const __m256i *)t->ctrl);
    __m256i lo = _mm256_loadu_si256((const __m256i *)t->table);
    __m256i hi = _mm256_loadu_si256((const __m256i *)(t->table + 32));
    for (int64_t r = 0; r + 4 <= rows; r += 4) {
        const uint8_t *p0 = w + r * stride, *p1 = p0 + stride, *p2 = p1 + stride, *p3 = p2 + stride;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t c = 0; c < chunks; c++) {
            __m256i xs = _mm256_loadu_si256((const __m256i *)(x + 32 * c)), xa = _mm256_abs_epi8(xs);
            a0 = _mm256_dpbusd_epi32(a0, xa, _mm256_sign_epi8(w_wide(p0, c, ctrl, lo, hi), xs));
            a1 = _mm256_dpbusd_epi32(a1, xa, _mm256_sign_epi8(w_wide(p1, c, ctrl, lo, hi), xs));
            a2 = _mm256_dpbusd_epi32(a2, xa, _mm256_sign_epi8(w_wide(p2, c, ctrl, lo, hi), xs));
            a3 = _mm256_dpbusd_epi32(a3, xa, _mm256_sign_epi8(w_wide(p3, c, ctrl, lo, hi), xs));
        }
        acc[r] = hsum32(a0); acc[r + 1] = hsum32(a1); acc[r + 2] = hsum32(a2); acc[r + 3] = hsum32(a3);
    }
}

/* the runtime's kernels (_lut.c), found in the extension at run time */
typedef void (*Rows8)(const uint8_t *, int, const uint8_t *, int64_t, const int8_t *, int64_t, int64_t, int64_t,
                      const int8_t *, int32_t *);
typedef void (*Rows8Packed)(const uint8_t *, const int8_t *, int64_t, int64_t, int64_t, const int8_t *, int32_t *);
static Rows8 rows8_vnni;
static Rows8Packed rows8_vbmi;

static void rows_stored(const uint8_t *w, int64_t stride, int64_t rows, int64_t chunks, const Tables *t,
                        const int8_t *x, int32_t *acc) {
    rows8_vnni(w, 0, NULL, 0, t->table, rows, chunks, stride, x, acc);
}

static void rows_nibble(const uint8_t *w, int64_t stride, int64_t rows, int64_t chunks, const Tables *t,
                        const int8_t *x, int32_t *acc) {
    rows8_vnni(w, 1, NULL, 0, t->table, rows, chunks, stride, x, acc);
}

static void rows_packed(const uint8_t *w, int64_t stride, int64_t rows, int64_t chunks, const Tables *t,
                        const int8_t *x, int32_t *acc) {
    rows8_vbmi(w, t->table, rows, chunks, stride, x, acc);
}

typedef void (*Kernel)(const uint8_t *, int64_t, int64_t, int64_t, const Tables *, const int8_t *, int32_t *);

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return (d > 0) - (d < 0);
}

/* median us of `reps` calls after 5 warm-up calls; 0 if an output differs from ref */
static double timed(Kernel k, const uint8_t *w, int64_t stride, int64_t rows, int64_t chunks, const Tables *t,
                    const int8_t *x, int32_t *acc, const int64_t *ref, int reps) {
    double *times = malloc(sizeof(double) * reps);
    for (int i = 0; i < 5; i++) k(w, stride, rows, chunks, t, x, acc);
    for (int i = 0; i < reps; i++) {
        double t0 = now_us();
        k(w, stride, rows, chunks, t, x, acc);
        times[i] = now_us() - t0;
    }
    for (int64_t r = 0; r < rows; r++)
        if (acc[r] != ref[r]) { free(times); return 0; }
    qsort(times, reps, sizeof(double), cmp);
    double m = times[reps / 2];
    free(times);
    return m;
}

int main(int argc, char **argv) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512vbmi") || !__builtin_cpu_supports("avx512vnni") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512bw")) {
        fprintf(stderr, "wide_codes: this CPU lacks AVX-512 VBMI/VNNI; nothing to measure\n");
        return 2;
    }
    if (argc < 4) { fprintf(stderr, "usage: wide_codes LIB ROWS COLS [REPS]\n"); return 1; }
    void *lib = dlopen(argv[1], RTLD_LAZY);
    rows8_vnni = lib ? (Rows8)dlsym(lib, "dc_rows8_vnni") : NULL;
    rows8_vbmi = lib ? (Rows8Packed)dlsym(lib, "dc_rows8_vbmi") : NULL;
    if (!rows8_vnni || !rows8_vbmi) {
        fprintf(stderr, "wide_codes: %s: no dc_rows8_vnni / dc_rows8_vbmi (%s)\n", argv[1],
                lib ? "old build" : dlerror());
        return 1;
    }
    int64_t rows = atoll(argv[2]) / 4 * 4, cols = (atoll(argv[3]) + 31) / 32 * 32, chunks = cols / 32;
    int reps = argc > 4 ? atoi(argv[4]) : 21;
    if (rows < 4 || chunks < 1 || reps < 1) {
        fprintf(stderr, "wide_codes: need ROWS >= 4, COLS >= 1, REPS >= 1\n");
        return 1;
    }
    srand(1);
    Tables t;
    int8_t *table = t.table;
    for (int i = 0; i < 64; i++) table[i] = (int8_t)(rand() % 255 - 127);
    uint8_t *code = malloc(rows * cols);  /* 6-bit codes; their low 4 bits serve the nibble kernel */
    int8_t *x = aligned_alloc(64, cols);
    for (int64_t i = 0; i < rows * cols; i++) code[i] = (uint8_t)(rand() & 63);
    for (int64_t j = 0; j < cols; j++) x[j] = (int8_t)(rand() % 255 - 127);
    uint8_t *stored = aligned_alloc(64, rows * cols), *nib = aligned_alloc(64, rows * cols / 2);
    uint8_t *wide = aligned_alloc(64, rows * chunks * 24 + 64), *packed = aligned_alloc(64, rows * chunks * 24 + 64);
    memset(packed, 0, rows * chunks * 24 + 64);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < chunks; c++) {
            const uint8_t *k = code + r * cols + 32 * c;
            uint8_t *n = nib + r * cols / 2 + 16 * c, *wd = wide + r * chunks * 24 + 24 * c;
            uint64_t h = 0;
            for (int i = 0; i < 32; i++) {
                stored[r * cols + 32 * c + i] = (uint8_t)table[k[i]];
                h |= (uint64_t)(k[i] >> 4) << (2 * i);
            }
            for (int i = 0; i < 16; i++) {
                n[i] = (uint8_t)((k[i] & 15) | (k[16 + i] & 15) << 4);
                wd[i] = n[i];
            }
            memcpy(wd + 16, &h, 8);
            uint8_t *pk = packed + r * chunks * 24 + 24 * c;
            for (int i = 0; i < 32; i++)
                for (int b = 0; b < 6; b++)
                    if (k[i] >> b & 1) pk[(6 * i + b) / 8] |= (uint8_t)(1 << ((6 * i + b) % 8));
        }
    for (int i = 0; i < 32; i++) t.ctrl[i] = (int8_t)((2 * i - 4) & 63);
    int64_t *ref6 = calloc(rows, 8), *ref4 = calloc(rows, 8);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            ref6[r] += (int64_t)table[code[r * cols + j]] * x[j];
            ref4[r] += (int64_t)table[code[r * cols + j] & 15] * x[j];
        }
    int32_t *acc = calloc(rows, 4);
    struct {
        const char *name; Kernel k; const uint8_t *w; int64_t stride; const int64_t *ref; double bytes;
    } runs[] = {
        {"stored", rows_stored, stored, cols, ref6, (double)rows * cols},
        {"nibble", rows_nibble, nib, cols / 2, ref4, rows * cols / 2.0},
        {"wide", rows_wide, wide, chunks * 24, ref6, rows * chunks * 24.0},
        {"packed", rows_packed, packed, chunks * 24, ref6, rows * chunks * 24.0},
    };
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        double us = timed(runs[i].k, runs[i].w, runs[i].stride, rows, chunks, &t, x, acc, runs[i].ref, reps);
        if (us == 0) { printf("%s WRONG\n", runs[i].name); bad = 1; continue; }
        printf("%s %.0f %.2f %.4f\n", runs[i].name, runs[i].bytes, us, 1e3 * us / ((double)rows * cols));
    }
    return bad;
}
