/* The elementwise part of one GRU time step, forward and backward, fused into one pass each.
 *
 * gru.py runs the matmuls (W_hh h, dgh W_hh) with torch and calls these for the gate arithmetic
 * that torch would spread over ~8 (forward) and ~20 (backward) separate kernels and autograd
 * nodes per step. ATen's gru_cell equations (r, u, n; h' = n + u (h - n)); gate order r, u, n.
 *
 * Arrays are row-major and contiguous, B rows:
 *   gi, gh   [B][3H]  input and hidden projections (incl. biases) in the matmul dtype
 *   h, hout  [B][H]   float32 running state; hmm [B][H] the new state in bf16 (bf16 only)
 *   rz       [B][2H]  r | u;  n [B][H]: saved for backward, in the matmul dtype
 *   dh       [B][H]   float32: in dL/dh', out dh' u + gout (gout: the output's own gradient at h)
 *   backward's h and gout are in the matmul dtype too
 *   dgi, dgh [B][3H]  gradients of gi and gh in the matmul dtype
 *   db       [3H]     float32, accumulated: += the column sums of dgh (b_hh's gradient)
 * "bf16" selects bfloat16 for the matmul-dtype arrays (round to nearest even), else float32.
 * tanh is a rational approximation (Eigen's; |error| < 3e-7, tests/test_gru.py); sigmoid(x) =
 * (1 + tanh(x / 2)) / 2. Pointers arrive as integers from torch's data_ptr().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define KERNEL __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KERNEL
#endif

static inline float bf16_load(const uint16_t *p, Py_ssize_t i)
{
    uint32_t bits = (uint32_t)p[i] << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t bf16_round(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

static inline float fast_tanh(float x)
{
    const float bound = 7.90531110763549805f;
    x = x > bound ? bound : (x < -bound ? -bound : x);
    float x2 = x * x;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * x;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    return p / q;
}

static inline float fast_sigmoid(float x) { return 0.5f + 0.5f * fast_tanh(0.5f * x); }

/* One row of the forward step. LOAD reads gi/gh, SAVE writes rz/n, STORE_MM writes hmm. */
#define FORWARD_ROW(LOAD, SAVE, STORE_MM)                                            \
    for (Py_ssize_t j = 0; j < H; j++) {                                             \
        float r = fast_sigmoid(LOAD(gi, j) + LOAD(gh, j));                           \
        float u = fast_sigmoid(LOAD(gi, H + j) + LOAD(gh, H + j));                   \
        float nn = fast_tanh(LOAD(gi, 2 * H + j) + r * LOAD(gh, 2 * H + j));         \
        float hn = nn + u * (h[j] - nn);                                             \
        SAVE(rz, j, r);                                                              \
        SAVE(rz, H + j, u);                                                          \
        SAVE(n, j, nn);                                                              \
        hout[j] = hn;                                                                \
        STORE_MM(j, hn);                                                             \
    }

#define LOAD_F32(p, i) (p)[i]
#define LOAD_BF16(p, i) bf16_load(p, i)
#define STORE_F32(p, i, v) (p)[i] = (v)
#define STORE_BF16(p, i, v) (p)[i] = bf16_round(v)
#define STORE_MM_NONE(j, v)
#define STORE_MM_BF16(j, v) hmm[j] = bf16_round(v)

KERNEL static void forward_f32(Py_ssize_t B, Py_ssize_t H, const float *restrict gi, const float *restrict gh,
                               const float *restrict h, float *restrict rz, float *restrict n, float *restrict hout)
{
    for (Py_ssize_t b = 0; b < B; b++) {
        FORWARD_ROW(LOAD_F32, STORE_F32, STORE_MM_NONE)
        gi += 3 * H; gh += 3 * H; h += H; rz += 2 * H; n += H; hout += H;
    }
}

/* bf16: the gates and the new state are saved for backward in bf16 (half the memory traffic);
 * the running state h/hout stays float32. */
KERNEL static void forward_bf16(Py_ssize_t B, Py_ssize_t H, const uint16_t *restrict gi, const uint16_t *restrict gh,
                                const float *restrict h, uint16_t *restrict rz, uint16_t *restrict n,
                                float *restrict hout, uint16_t *restrict hmm)
{
    for (Py_ssize_t b = 0; b < B; b++) {
        FORWARD_ROW(LOAD_BF16, STORE_BF16, STORE_MM_BF16)
        gi += 3 * H; gh += 3 * H; h += H; rz += 2 * H; n += H; hout += H; hmm += H;
    }
}

/* One row of the backward step. LOAD reads the saved arrays (gh, rz, n, h, gout), STORE writes dgi/dgh. */
#define BACKWARD_ROW(LOAD, STORE)                                                    \
    for (Py_ssize_t j = 0; j < H; j++) {                                             \
        float r = LOAD(rz, j), u = LOAD(rz, H + j), nn = LOAD(n, j), d = dh[j];      \
        float dn = d * (1.0f - u) * (1.0f - nn * nn);                                \
        float du = d * (LOAD(h, j) - nn) * u * (1.0f - u);                           \
        float dr = dn * LOAD(gh, 2 * H + j) * r * (1.0f - r);                        \
        STORE(dgi, j, dr);                                                           \
        STORE(dgi, H + j, du);                                                       \
        STORE(dgi, 2 * H + j, dn);                                                   \
        STORE(dgh, j, dr);                                                           \
        STORE(dgh, H + j, du);                                                       \
        STORE(dgh, 2 * H + j, dn * r);                                               \
        db[j] += dr;                                                                 \
        db[H + j] += du;                                                             \
        db[2 * H + j] += dn * r;                                                     \
        dh[j] = d * u + LOAD(gout, j);                                               \
    }

KERNEL static void backward_f32(Py_ssize_t B, Py_ssize_t H, float *restrict dh, const float *restrict gout,
                                const float *restrict rz, const float *restrict n, const float *restrict gh,
                                const float *restrict h, float *restrict dgi, float *restrict dgh,
                                float *restrict db)
{
    for (Py_ssize_t b = 0; b < B; b++) {
        BACKWARD_ROW(LOAD_F32, STORE_F32)
        dh += H; gout += H; rz += 2 * H; n += H; gh += 3 * H; h += H; dgi += 3 * H; dgh += 3 * H;
    }
}

KERNEL static void backward_bf16(Py_ssize_t B, Py_ssize_t H, float *restrict dh, const uint16_t *restrict gout,
                                 const uint16_t *restrict rz, const uint16_t *restrict n, const uint16_t *restrict gh,
                                 const uint16_t *restrict h, uint16_t *restrict dgi, uint16_t *restrict dgh,
                                 float *restrict db)
{
    for (Py_ssize_t b = 0; b < B; b++) {
        BACKWARD_ROW(LOAD_BF16, STORE_BF16)
        dh += H; gout += H; rz += 2 * H; n += H; gh += 3 * H; h += H; dgi += 3 * H; dgh += 3 * H;
    }
}

#define PTR(type, x) ((type *)(uintptr_t)(x))

static PyObject *forward(PyObject *self, PyObject *args)
{
    Py_ssize_t B, H, gi, gh, h, rz, n, hout, hmm;
    int bf16;
    if (!PyArg_ParseTuple(args, "nnpnnnnnnn", &B, &H, &bf16, &gi, &gh, &h, &rz, &n, &hout, &hmm))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (bf16)
        forward_bf16(B, H, PTR(uint16_t, gi), PTR(uint16_t, gh), PTR(float, h), PTR(uint16_t, rz), PTR(uint16_t, n),
                     PTR(float, hout), PTR(uint16_t, hmm));
    else
        forward_f32(B, H, PTR(float, gi), PTR(float, gh), PTR(float, h), PTR(float, rz), PTR(float, n),
                    PTR(float, hout));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *backward(PyObject *self, PyObject *args)
{
    Py_ssize_t B, H, dh, gout, rz, n, gh, h, dgi, dgh, db;
    int bf16;
    if (!PyArg_ParseTuple(args, "nnpnnnnnnnnn", &B, &H, &bf16, &dh, &gout, &rz, &n, &gh, &h, &dgi, &dgh, &db))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (bf16)
        backward_bf16(B, H, PTR(float, dh), PTR(uint16_t, gout), PTR(uint16_t, rz), PTR(uint16_t, n), PTR(uint16_t, gh),
                      PTR(uint16_t, h), PTR(uint16_t, dgi), PTR(uint16_t, dgh), PTR(float, db));
    else
        backward_f32(B, H, PTR(float, dh), PTR(float, gout), PTR(float, rz), PTR(float, n), PTR(float, gh),
                     PTR(float, h), PTR(float, dgi), PTR(float, dgh), PTR(float, db));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *tanh_(PyObject *self, PyObject *args)
{
    float x;
    if (!PyArg_ParseTuple(args, "f", &x))
        return NULL;
    return PyFloat_FromDouble((double)fast_tanh(x));
}

static PyMethodDef methods[] = {
    {"forward", forward, METH_VARARGS, "forward(B, H, bf16, gi, gh, h, rz, n, hout, hmm): one forward step."},
    {"backward", backward, METH_VARARGS, "backward(B, H, bf16, dh, gout, rz, n, gh, h, dgi, dgh, db): one backward step."},
    {"tanh", tanh_, METH_VARARGS, "tanh(x): the kernel's tanh approximation of one float (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gru_cell", "Fused GRU time-step kernels.", -1, methods};

PyMODINIT_FUNC PyInit__gru_cell(void) { return PyModule_Create(&module); }
