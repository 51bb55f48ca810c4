/* The elementwise steps of the 8-bit hyper-synthesis in one pass each: the native half of
 * slimfast/coding/intmath.py (requantize8, affine8, scale_index8), whose numpy code defines them.
 *
 * Each output is the same IEEE-754 double operations in the same order as the numpy code: a
 * float32 accumulator widened to double (exact), times the channel's multiplier (one rounding),
 * plus its bias (another), then rint (half to even, the default rounding mode), clips and a
 * table lookup. The file is compiled with -ffp-contract=off so that no multiply-add is fused:
 * the results are bit-identical to numpy's on any IEEE machine. The loops hold no Python objects
 * and run without the GIL: the two branches run on two threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#define A8_MAX 255.0
#define ACT_FRAC_SCALE 256.0 /* 2**ACT_FRAC */
#define ACT_CLIP 8388608.0   /* 2**ACT_CLIP */
#define STEP_ONE 4096
/* numpy's clip(x, lo, hi) of floats, as measured: x where lo <= x <= hi, so -0.0 stays -0.0.
 * Written as maxsd / minsd compute them (the second operand unless the first is strictly larger /
 * smaller), with those instructions where SSE2 is there: compilers turn the plain form into
 * branches, which mispredict on every other latent. */
#ifdef __SSE2__
#include <emmintrin.h>
static inline double NP_MAX(double x, double lo) { return _mm_cvtsd_f64(_mm_max_sd(_mm_set_sd(lo), _mm_set_sd(x))); }
static inline double NP_MIN(double x, double hi) { return _mm_cvtsd_f64(_mm_min_sd(_mm_set_sd(hi), _mm_set_sd(x))); }
#else
static inline double NP_MAX(double x, double lo) { return lo > x ? lo : x; }
static inline double NP_MIN(double x, double hi) { return hi < x ? hi : x; }
#endif

/* rint (half to even, the sign kept: rint(-0.4) is -0.0) without a libm call per element: adding
 * and subtracting 1.5 * 2^52 rounds a double below 2^51 in magnitude to an integer in the default
 * rounding mode; larger ones (not met here) go to rint itself. */
static inline double rint_even(double t) {
    const double magic = 6755399441055744.0; /* 2^52 + 2^51 */
    if (fabs(t) < 2251799813685248.0)        /* 2^51 */
        return copysign((t + magic) - magic, t);
    return rint(t);
}

static int get_buffer(PyObject *o, Py_buffer *b, int flags, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(o, b, flags | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (b->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes expected", what, itemsize);
        PyBuffer_Release(b);
        return -1;
    }
    return 0;
}

/* The arguments every step takes: float32 accumulators, a float64 multiplier and bias per
 * channel (C of them), and a writable output of out_item-byte items, one per accumulator. */
typedef struct {
    Py_buffer acc, mul, add, out;
    Py_ssize_t c, n;
} Views;

static int open_views(PyObject *ao, PyObject *mo, PyObject *bo, PyObject *oo, Py_ssize_t out_item, Views *v) {
    if (get_buffer(ao, &v->acc, 0, 4, "acc") < 0) return -1;
    if (get_buffer(mo, &v->mul, 0, 8, "multiplier") < 0) goto r_acc;
    if (get_buffer(bo, &v->add, 0, 8, "bias") < 0) goto r_mul;
    if (get_buffer(oo, &v->out, PyBUF_WRITABLE, out_item, "out") < 0) goto r_add;
    v->c = v->mul.len / 8;
    v->n = v->acc.len / 4;
    if (v->c > 0 && v->add.len == v->mul.len && v->n % v->c == 0 && v->out.len == v->n * out_item) return 0;
    PyErr_SetString(PyExc_ValueError, "acc: C channels of float32; multiplier, bias: C float64; out: one per acc");
    PyBuffer_Release(&v->out);
r_add:
    PyBuffer_Release(&v->add);
r_mul:
    PyBuffer_Release(&v->mul);
r_acc:
    PyBuffer_Release(&v->acc);
    return -1;
}

static void close_views(Views *v) {
    PyBuffer_Release(&v->out);
    PyBuffer_Release(&v->add);
    PyBuffer_Release(&v->mul);
    PyBuffer_Release(&v->acc);
}

/* requantize8(acc float32 [n, C], m float64 [C], b float64 [C], out float32 [n, C]) */
static PyObject *requantize8(PyObject *self, PyObject *args) {
    PyObject *ao, *mo, *bo, *oo;
    Views v;
    if (!PyArg_ParseTuple(args, "OOOO", &ao, &mo, &bo, &oo) || open_views(ao, mo, bo, oo, 4, &v) < 0) return NULL;
    const float *src = v.acc.buf;
    const double *mul = v.mul.buf, *add = v.add.buf;
    float *dst = v.out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < v.n; i += v.c)
        for (Py_ssize_t k = 0; k < v.c; k++) {
            double t = (double)src[i + k] * mul[k];
            t = rint_even(t + add[k]);
            dst[i + k] = (float)NP_MIN(NP_MAX(t, 0.0), A8_MAX);
        }
    Py_END_ALLOW_THREADS
    close_views(&v);
    Py_RETURN_NONE;
}

/* affine8(acc float32 [C, hw], m float64 [C], b float64 [C], out float64 [C, hw]) */
static PyObject *affine8(PyObject *self, PyObject *args) {
    PyObject *ao, *mo, *bo, *oo;
    Views v;
    if (!PyArg_ParseTuple(args, "OOOO", &ao, &mo, &bo, &oo) || open_views(ao, mo, bo, oo, 8, &v) < 0) return NULL;
    const float *src = v.acc.buf;
    const double *mul = v.mul.buf, *add = v.add.buf;
    double *dst = v.out.buf;
    Py_ssize_t hw = v.n / v.c;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < v.c; k++)
        for (Py_ssize_t i = k * hw; i < (k + 1) * hw; i++) {
            double t = (double)src[i] * mul[k];
            dst[i] = t + add[k];
        }
    Py_END_ALLOW_THREADS
    close_views(&v);
    Py_RETURN_NONE;
}

/* floor(v * STEP_ONE / step) of an integer |v| <= 2**23 (numpy's floor_divide on int64) */
static double divide_by_step(double v, long step) {
    int64_t a = (int64_t)v * STEP_ONE, q = a / step;
    if (a % step != 0 && a < 0) q -= 1; /* step > 0: C truncates towards zero, floor goes down */
    return (double)q;
}

/* scale_index8(acc float32 [C, hw], m float64 [C], b float64 [C], step, lut int16 [L], out int16 [C, hw]) */
static PyObject *scale_index8(PyObject *self, PyObject *args) {
    PyObject *ao, *mo, *bo, *lo, *oo;
    long step;
    Py_buffer l;
    Views v;
    if (!PyArg_ParseTuple(args, "OOOlOO", &ao, &mo, &bo, &step, &lo, &oo)) return NULL;
    if (step <= 0) return PyErr_Format(PyExc_ValueError, "scale_index8: step must be positive, not %ld", step);
    if (get_buffer(lo, &l, 0, 2, "lut") < 0) return NULL;
    if (l.len < 2 || open_views(ao, mo, bo, oo, 2, &v) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "scale_index8: an empty lut");
        PyBuffer_Release(&l);
        return NULL;
    }
    const float *src = v.acc.buf;
    const double *mul = v.mul.buf, *add = v.add.buf, top = (double)(l.len / 2 - 1);
    const int16_t *lut = l.buf;
    int16_t *dst = v.out.buf;
    Py_ssize_t hw = v.n / v.c;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < v.c; k++)
        for (Py_ssize_t i = k * hw; i < (k + 1) * hw; i++) {
            double t = (double)src[i] * mul[k];
            t = rint_even((t + add[k]) * ACT_FRAC_SCALE); /* a power of two: the product is exact */
            if (step != STEP_ONE) t = divide_by_step(NP_MIN(NP_MAX(t, -ACT_CLIP), ACT_CLIP), step);
            dst[i] = lut[(Py_ssize_t)NP_MIN(NP_MAX(t, 0.0), top)];
        }
    Py_END_ALLOW_THREADS
    close_views(&v);
    PyBuffer_Release(&l);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"requantize8", requantize8, METH_VARARGS, "clip(rint(acc * m + b), 0, 255) per channel (last axis), into out."},
    {"affine8", affine8, METH_VARARGS, "acc * m + b per channel (first axis), float64, into out."},
    {"scale_index8", scale_index8, METH_VARARGS, "lut[clip(step-divided fixed-point (acc * m + b))], into out."},
    {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_intmath", "Fused 8-bit hyper-synthesis steps (intmath.py).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__intmath(void) { return PyModule_Create(&module); }
