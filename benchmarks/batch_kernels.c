#define _GNU_SOURCE
/* Batch-64 int8 kernel variants on a random layer (default Alex-8's shape and densities), kernel alone,
   thread CPU time, min over reps; every output checked against a scalar int64 reference:
   - rowquads and panelquads: the runtime's kernels (src/deepcompress/runtime/_lut.c);
   - fixed column quads (not in the runtime): the batch stored [column quad][lane][4], a row's nonzero
     quads (any of its 4 weights nonzero) as one broadcast int32 of weights, one load + vpmaddubsw +
     vpmaddwd + add per 8 lanes x 4 columns and no shuffles, in panels of 64 quads (x in L1);
     post-ReLU inputs (0..127) only.

   cc -O2 -std=c11 -I$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])") \
      -o /tmp/batch_kernels benchmarks/batch_kernels.c src/deepcompress/runtime/_lut.c
   /tmp/batch_kernels [rows cols weight_density act_density reps]     (default 1000 4096 0.25 0.375 15) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>
void dc_rowquads8_avx2(const int32_t *row_ptr, int64_t rows, const uint16_t *qcols, const uint32_t *qw,
                       const int8_t *xt, int64_t lanes, int neg, int32_t *acc);
void dc_panelquads8_avx2(const int32_t *row_ptr, int64_t rows, int64_t panels, int64_t width, const uint16_t *recs,
                         const int8_t *xt, int64_t lanes, int neg, int32_t *acc);
#define AVX2 __attribute__((target("avx2,fma")))
/* fixed column quads: xf[g][lane][4] (64 lanes), row r's nonzero quads gidx/gw, in panels of P groups */
AVX2 void fixedquads(const int32_t *ptr, int64_t rows, int64_t panels, int64_t pg, const uint16_t *gidx,
                     const uint32_t *gw, const int8_t *xf, int32_t *acc) {
    __m256i ones = _mm256_set1_epi16(1);
    for (int64_t p = 0; p < panels; p++) {
        const int32_t *pp = ptr + p * rows;
        const int8_t *x = xf + p * pg * 256;
        for (int64_t r = 0; r < rows; r++) {
            __m256i *o = (__m256i *)(acc + r * 64);
            __m256i a[8];
            for (int v = 0; v < 8; v++) a[v] = p ? _mm256_loadu_si256(o + v) : _mm256_setzero_si256();
            for (int32_t q = pp[r]; q < pp[r + 1]; q++) {
                const int8_t *xq = x + (int64_t)gidx[q] * 256;
                __m256i w = _mm256_set1_epi32((int32_t)gw[q]);
                for (int v = 0; v < 8; v++)
                    a[v] = _mm256_add_epi32(a[v], _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(xq + 32 * v)), w), ones));
            }
            for (int v = 0; v < 8; v++) _mm256_storeu_si256(o + v, a[v]);
        }
    }
}
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    int R = argc > 1 ? atoi(argv[1]) : 1000, C = argc > 2 ? atoi(argv[2]) : 4096;
    double dens = argc > 3 ? atof(argv[3]) : 0.25, adens = argc > 4 ? atof(argv[4]) : 0.375;
    int L = 64, reps = argc > 5 ? atoi(argv[5]) : 15;
    srand(1);
    int8_t *W = calloc((size_t)R * C, 1);
    long nnz = 0;
    for (long i = 0; i < (long)R * C; i++) if (rand() < dens * RAND_MAX) { int v = rand() % 255 - 127; W[i] = v ? v : 1; nnz++; }
    int Cp = (C + 255) / 256 * 256;
    int8_t *xt = calloc((size_t)Cp * L, 1);
    for (int j = 0; j < C; j++) for (int l = 0; l < L; l++) xt[j * L + l] = rand() < adens * RAND_MAX ? rand() % 128 : 0;
    /* reference */
    int64_t *ref = calloc((size_t)R * L, 8);
    for (int r = 0; r < R; r++) for (int j = 0; j < C; j++) if (W[(long)r * C + j]) for (int l = 0; l < L; l++) ref[r * L + l] += W[(long)r * C + j] * xt[j * L + l];
    /* rowquads */
    int32_t *rp = calloc(R + 1, 4); uint16_t *qc = calloc(nnz + 4 * R, 2); uint32_t *qw = calloc(nnz / 4 + R + 1, 4);
    long q = 0;
    for (int r = 0; r < R; r++) { int k = 0; for (int j = 0; j < C; j++) if (W[(long)r * C + j]) { qc[4 * q + k] = j; ((int8_t *)qw)[4 * q + k] = W[(long)r * C + j]; if (++k == 4) { k = 0; q++; } } if (k) q++; rp[r + 1] = q; }
    /* panelquads */
    int P = Cp / 256;
    int32_t *pp = calloc((size_t)P * R + 1, 4); uint16_t *pr = calloc(6 * (nnz / 4 + (size_t)P * R + 1), 2);
    q = 0;
    for (int p = 0; p < P; p++) for (int r = 0; r < R; r++) { int k = 0; for (int j = p * 256; j < p * 256 + 256 && j < C; j++) if (W[(long)r * C + j]) { pr[6 * q + k] = (j - p * 256) * 64; ((int8_t *)(pr + 6 * q + 4))[k] = W[(long)r * C + j]; if (++k == 4) { k = 0; q++; } } if (k) q++; pp[p * R + r + 1] = q; }
    /* fixed quads, panels of PG groups */
    int PG = 64, G = Cp / 4, FP = (G + PG - 1) / PG;
    int8_t *xf = calloc((size_t)FP * PG * 256, 1);
    for (int j = 0; j < C; j++) for (int l = 0; l < L; l++) xf[(j / 4) * 256 + l * 4 + j % 4] = xt[j * L + l];
    int32_t *fp = calloc((size_t)FP * R + 1, 4); uint16_t *fg = calloc((size_t)G * R, 2); uint32_t *fw = calloc((size_t)G * R, 4);
    long fq = 0;
    for (int p = 0; p < FP; p++) for (int r = 0; r < R; r++) { for (int g = p * PG; g < p * PG + PG && g < G; g++) { uint32_t w = 0; for (int i = 0; i < 4; i++) { int j = 4 * g + i; if (j < C) w |= (uint32_t)(uint8_t)W[(long)r * C + j] << (8 * i); } if (w) { fg[fq] = g - p * PG; fw[fq] = w; fq++; } } fp[p * R + r + 1] = fq; }
    int32_t *acc = aligned_alloc(64, (size_t)R * L * 4);
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int it = 0; it < reps; it++) {
        double t = now(); dc_rowquads8_avx2(rp, R, qc, qw, xt, L, 0, acc); t = now() - t; if (t < best[0]) best[0] = t;
        if (!it) for (long i = 0; i < (long)R * L; i++) if (acc[i] != ref[i]) { printf("rowquads mismatch\n"); break; }
        t = now(); dc_panelquads8_avx2(pp, R, P, 256, pr, xt, L, 0, acc); t = now() - t; if (t < best[1]) best[1] = t;
        if (!it) for (long i = 0; i < (long)R * L; i++) if (acc[i] != ref[i]) { printf("panelquads mismatch %ld %d %ld\n", i, acc[i], (long)ref[i]); break; }
        t = now(); fixedquads(fp, R, FP, PG, fg, fw, xf, acc); t = now() - t; if (t < best[2]) best[2] = t;
        if (!it) for (long i = 0; i < (long)R * L; i++) if (acc[i] != ref[i]) { printf("fixed mismatch\n"); break; }
    }
    printf("R=%d C=%d dens=%.3f nnz=%ld rowquad-quads=%d panel-quads=%d fixed-quads=%ld (nnz/fixed quad %.2f)\n", R, C, dens, nnz, rp[R], pp[P * R], fq, (double)nnz / fq);
    printf("rowquads %.0f us  panelquads %.0f us  fixedquads(panels %d groups) %.0f us   | MAC/ns: %.1f %.1f %.1f\n",
           best[0] * 1e6, best[1] * 1e6, PG, best[2] * 1e6, nnz * 64 / best[0] * 1e-9, nnz * 64 / best[1] * 1e-9, nnz * 64 / best[2] * 1e-9);
    return 0;
}
/* _lut.c's module init refers to it; never called here */
void *PyModule_Create2(void *a, int b) { (void)a; (void)b; return 0; }
