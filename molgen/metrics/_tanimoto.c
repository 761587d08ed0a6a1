/* Tanimoto statistics of 1024-bit fingerprints with AVX-512 VPOPCNTDQ: |A & B| by popcount.
 *
 * molgen's portable path (similarity.py) counts intersections as int8 matrix products, one
 * multiply-add per bit; here one instruction counts 512 bits. Both give the same integers and take
 * the ratio in float32 the same way: nearest similarities are identical, and similarity sums differ
 * only in the order of addition (float64 here). Python calls this module only when
 * supported() is true and falls back to the portable path otherwise (other CPUs, no compiler).
 *
 * Layouts (prepared by similarity.py):
 *   rows    uint64 [n_rows][16]              fingerprints as 16 words; n_rows a multiple of ROWS
 *   cols    uint64 [n_cols / 8][16][8]       8 fingerprints side by side, word-major
 *   *_pop   int32                            popcounts; padding columns are all-zero words with a
 *                                            huge popcount, so their similarity is exactly 0
 * An empty fingerprint against an empty one has similarity 1 (MOSES maps 0/0 to 1).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define WORDS 16  /* 1024 bits */
#define LANES 8   /* columns per 512-bit vector */
#define ROWS 8    /* rows sharing each column load */
#define TILE 1024 /* columns per tile: 128 KB, stays in L2 while a block of rows passes over it */

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_KERNEL 1
#define KERNEL __attribute__((target("avx512f,avx512vpopcntdq")))

/* Tanimoto similarities of ROWS rows against LANES columns: sim[q] holds row q's 8 values. */
KERNEL static inline void
tile_similarities(const uint64_t *rows, const __m256 *row_pop, const uint64_t *block,
                  const int32_t *block_pop, __m256 sim[ROWS])
{
    __m512i common[ROWS];
    for (int q = 0; q < ROWS; q++)
        common[q] = _mm512_setzero_si512();
    for (int w = 0; w < WORDS; w++) {
        __m512i column = _mm512_loadu_si512(block + w * LANES);
        for (int q = 0; q < ROWS; q++) {
            __m512i both = _mm512_and_si512(column, _mm512_set1_epi64((long long)rows[q * WORDS + w]));
            common[q] = _mm512_add_epi64(common[q], _mm512_popcnt_epi64(both));
        }
    }
    __m256 b = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)block_pop));
    __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    for (int q = 0; q < ROWS; q++) {
        __m256 c = _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(common[q]));
        __m256 union_ = _mm256_sub_ps(_mm256_add_ps(row_pop[q], b), c);
        __m256 ratio = _mm256_div_ps(c, union_);
        __m256 empty = _mm256_cmp_ps(union_, zero, _CMP_EQ_OQ);
        sim[q] = _mm256_blendv_ps(ratio, one, empty);
    }
}

KERNEL static inline float horizontal_max(__m256 v)
{
    float lanes[LANES];
    _mm256_storeu_ps(lanes, v);
    float m = lanes[0];
    for (int l = 1; l < LANES; l++)
        m = lanes[l] > m ? lanes[l] : m;
    return m;
}

KERNEL static void
nearest_kernel(const uint64_t *rows, const int32_t *rows_pop, Py_ssize_t n_rows,
               const uint64_t *cols, const int32_t *cols_pop, Py_ssize_t n_blocks, float *best)
{
    for (Py_ssize_t tile = 0; tile < n_blocks; tile += TILE / LANES) {
        Py_ssize_t tile_end = tile + TILE / LANES < n_blocks ? tile + TILE / LANES : n_blocks;
        for (Py_ssize_t i = 0; i < n_rows; i += ROWS) {
            __m256 a[ROWS], top[ROWS], sim[ROWS];
            for (int q = 0; q < ROWS; q++) {
                a[q] = _mm256_set1_ps((float)rows_pop[i + q]);
                top[q] = _mm256_setzero_ps();
            }
            for (Py_ssize_t k = tile; k < tile_end; k++) {
                tile_similarities(rows + i * WORDS, a, cols + k * WORDS * LANES, cols_pop + k * LANES, sim);
                for (int q = 0; q < ROWS; q++)
                    top[q] = _mm256_max_ps(top[q], sim[q]);
            }
            for (int q = 0; q < ROWS; q++) {
                float m = horizontal_max(top[q]);
                if (m > best[i + q])
                    best[i + q] = m;
            }
        }
    }
}

KERNEL static void
sums_kernel(const uint64_t *rows, const int32_t *rows_pop, Py_ssize_t n_rows,
            const uint64_t *cols, const int32_t *cols_pop, Py_ssize_t n_blocks, double *sums, double *squares)
{
    for (Py_ssize_t tile = 0; tile < n_blocks; tile += TILE / LANES) {
        Py_ssize_t tile_end = tile + TILE / LANES < n_blocks ? tile + TILE / LANES : n_blocks;
        for (Py_ssize_t i = 0; i < n_rows; i += ROWS) {
            __m256 a[ROWS], sim[ROWS];
            __m512d sum[ROWS], square[ROWS];
            for (int q = 0; q < ROWS; q++) {
                a[q] = _mm256_set1_ps((float)rows_pop[i + q]);
                sum[q] = square[q] = _mm512_setzero_pd();
            }
            for (Py_ssize_t k = tile; k < tile_end; k++) {
                tile_similarities(rows + i * WORDS, a, cols + k * WORDS * LANES, cols_pop + k * LANES, sim);
                for (int q = 0; q < ROWS; q++) {
                    __m256 s2 = _mm256_mul_ps(sim[q], sim[q]); /* squared in float32, as MOSES does */
                    sum[q] = _mm512_add_pd(sum[q], _mm512_cvtps_pd(sim[q]));
                    square[q] = _mm512_add_pd(square[q], _mm512_cvtps_pd(s2));
                }
            }
            for (int q = 0; q < ROWS; q++) {
                sums[i + q] += _mm512_reduce_add_pd(sum[q]);
                squares[i + q] += _mm512_reduce_add_pd(square[q]);
            }
        }
    }
}

static int cpu_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
}
#else
#define HAVE_KERNEL 0
static int cpu_supported(void) { return 0; }
#endif

/* ---------------------------------------------------------------- Python bindings */

typedef struct {
    Py_buffer rows, rows_pop, cols, cols_pop;
    Py_ssize_t n_rows, n_blocks;
} Operands;

static void release(Operands *op)
{
    PyBuffer_Release(&op->rows);
    PyBuffer_Release(&op->rows_pop);
    PyBuffer_Release(&op->cols);
    PyBuffer_Release(&op->cols_pop);
}

/* Checks the sizes of the four input buffers; on failure sets an exception and releases them. */
static int check_operands(Operands *op)
{
    const char *problem = NULL;
    op->n_rows = op->rows.len / (Py_ssize_t)(WORDS * sizeof(uint64_t));
    op->n_blocks = op->cols.len / (Py_ssize_t)(WORDS * LANES * sizeof(uint64_t));
    if (!cpu_supported())
        problem = "this CPU has no AVX-512 VPOPCNTDQ; use the portable path";
    else if (op->rows.len != op->n_rows * (Py_ssize_t)(WORDS * sizeof(uint64_t)) || op->n_rows % ROWS)
        problem = "rows must be uint64 [n][16] with n a multiple of 8";
    else if (op->cols.len != op->n_blocks * (Py_ssize_t)(WORDS * LANES * sizeof(uint64_t)))
        problem = "cols must be uint64 [n / 8][16][8]";
    else if (op->rows_pop.len != op->n_rows * (Py_ssize_t)sizeof(int32_t))
        problem = "rows_pop must be int32 [n_rows]";
    else if (op->cols_pop.len != op->n_blocks * LANES * (Py_ssize_t)sizeof(int32_t))
        problem = "cols_pop must be int32 [n_cols]";
    if (problem == NULL)
        return 1;
    PyErr_SetString(PyExc_ValueError, problem);
    release(op);
    return 0;
}

static PyObject *nearest(PyObject *self, PyObject *args)
{
    Operands op;
    Py_buffer best;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &op.rows, &op.rows_pop, &op.cols, &op.cols_pop, &best))
        return NULL;
    if (!check_operands(&op)) {
        PyBuffer_Release(&best);
        return NULL;
    }
    if (best.len != op.n_rows * (Py_ssize_t)sizeof(float)) {
        release(&op);
        PyBuffer_Release(&best);
        PyErr_SetString(PyExc_ValueError, "best must be float32 [n_rows]");
        return NULL;
    }
#if HAVE_KERNEL
    Py_BEGIN_ALLOW_THREADS
    nearest_kernel(op.rows.buf, op.rows_pop.buf, op.n_rows, op.cols.buf, op.cols_pop.buf, op.n_blocks, best.buf);
    Py_END_ALLOW_THREADS
#endif
    release(&op);
    PyBuffer_Release(&best);
    Py_RETURN_NONE;
}

static PyObject *similarity_sums(PyObject *self, PyObject *args)
{
    Operands op;
    Py_buffer sums, squares;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*", &op.rows, &op.rows_pop, &op.cols, &op.cols_pop, &sums, &squares))
        return NULL;
    if (!check_operands(&op)) {
        PyBuffer_Release(&sums);
        PyBuffer_Release(&squares);
        return NULL;
    }
    Py_ssize_t want = op.n_rows * (Py_ssize_t)sizeof(double);
    if (sums.len != want || squares.len != want) {
        release(&op);
        PyBuffer_Release(&sums);
        PyBuffer_Release(&squares);
        PyErr_SetString(PyExc_ValueError, "sums and squares must be float64 [n_rows]");
        return NULL;
    }
#if HAVE_KERNEL
    Py_BEGIN_ALLOW_THREADS
    sums_kernel(op.rows.buf, op.rows_pop.buf, op.n_rows, op.cols.buf, op.cols_pop.buf, op.n_blocks,
                sums.buf, squares.buf);
    Py_END_ALLOW_THREADS
#endif
    release(&op);
    PyBuffer_Release(&sums);
    PyBuffer_Release(&squares);
    Py_RETURN_NONE;
}

static PyObject *supported(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(cpu_supported());
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the kernels (AVX-512 VPOPCNTDQ)."},
    {"nearest", nearest, METH_VARARGS,
     "nearest(rows, rows_pop, cols, cols_pop, best): best[i] = max(best[i], max_j T(row i, col j))."},
    {"similarity_sums", similarity_sums, METH_VARARGS,
     "similarity_sums(rows, rows_pop, cols, cols_pop, sums, squares): add sum_j T_ij and sum_j T_ij^2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tanimoto", NULL, -1, methods};

PyMODINIT_FUNC PyInit__tanimoto(void) { return PyModule_Create(&module); }
