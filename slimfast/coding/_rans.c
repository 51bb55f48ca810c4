/* Interleaved rANS over frozen 16-bit frequency tables: the native half of slimfast/coding/rans.py.
 *
 * The format (docs/format.md, "rANS streams") is defined by rans.py's pure-Python reference; this
 * file must produce and accept exactly the same bytes. Two 32-bit states take symbols in turn
 * (symbol i uses state i & 1) and share one stream of bytes; the decoder reads both states first
 * (4 bytes each, most significant first, state 0 then state 1), then a byte whenever a state
 * falls below 2^23. A valid stream ends with both states at 2^23 and every byte read, which is
 * checked.
 *
 * Everything is integer arithmetic on uint32, so the bytes do not depend on the machine. The
 * loops hold no Python objects and run without the GIL: streams decode on several threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PROB_BITS 16
#define TOTAL (1u << PROB_BITS)
#define RANS_L (1u << 23) /* states in [2^23, 2^31): bytes out, 2^7 x the table precision */
#define HINT_BITS 10 /* the decoder's slot -> symbol hint: 2^10 buckets of 64 slots per row */
#define HINT_SHIFT (PROB_BITS - HINT_BITS)

/* Prepared tables (one bytes object, made by prepare()):
 *   int32 header[4]: T, width (the frequency rows' width + 1), valid-row count, 0
 *   int32 length[T]  (-1: a row that is not a valid table, which no symbol may use)
 *   int32 offset[T]
 *   uint32 cum[T][width]  cumulative frequencies; cum[t][s + 1] - cum[t][s] is symbol s's frequency
 *   uint16 hint[T][2^HINT_BITS]  the first symbol whose range reaches the bucket */
typedef struct {
    int32_t T, width;
    const int32_t *length, *offset;
    const uint32_t *cum;
    const uint16_t *hint;
} Tables;

static Py_ssize_t tables_size(int32_t T, int32_t width) {
    return 16 + 8 * (Py_ssize_t)T + 4 * (Py_ssize_t)T * width + 2 * (Py_ssize_t)T * (1 << HINT_BITS);
}

static int view_tables(const char *p, Py_ssize_t n, Tables *t) {
    const int32_t *h = (const int32_t *)p;
    if (n < 16 || h[0] < 0 || h[1] < 2 || h[1] > 65536 || n != tables_size(h[0], h[1])) {
        PyErr_SetString(PyExc_ValueError, "not a prepared table set");
        return -1;
    }
    t->T = h[0];
    t->width = h[1];
    t->length = h + 4;
    t->offset = t->length + t->T;
    t->cum = (const uint32_t *)(t->offset + t->T);
    t->hint = (const uint16_t *)(t->cum + (Py_ssize_t)t->T * t->width);
    return 0;
}

static int get_buffer(PyObject *o, Py_buffer *v, int flags, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(o, v, flags | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (itemsize && v->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes", what, itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* One row: cumulative frequencies and the hint, or 0 where the row is not a valid table
 * (n symbols and the escape, each at least 1, summing to 2^16). */
static int prepare_row(const int32_t *freq, int32_t n, int32_t fwidth, uint32_t *cum, uint16_t *hint) {
    if (n < 1 || n + 1 > fwidth) return 0;
    uint32_t s = 0;
    for (int32_t i = 0; i <= n; i++) {
        if (freq[i] < 1 || freq[i] > (int32_t)TOTAL) return 0;
        cum[i] = s;
        s += (uint32_t)freq[i];
    }
    if (s != TOTAL) return 0;
    cum[n + 1] = TOTAL;
    int32_t sym = 0;
    for (uint32_t b = 0; b < (1u << HINT_BITS); b++) {
        while (cum[sym + 1] <= (b << HINT_SHIFT)) sym++;
        hint[b] = (uint16_t)sym;
    }
    return 1;
}

/* prepare(freqs int32 [T, fwidth], lengths int32 [T], offsets int32 [T], fwidth) -> bytes */
static PyObject *prepare(PyObject *self, PyObject *args) {
    PyObject *fo, *lo, *oo, *res = NULL;
    int fwidth;
    Py_buffer f, l, o;
    if (!PyArg_ParseTuple(args, "OOOi", &fo, &lo, &oo, &fwidth)) return NULL;
    if (fwidth < 2 || fwidth > 65535) return PyErr_Format(PyExc_ValueError, "table width %d out of range", fwidth);
    if (get_buffer(fo, &f, PyBUF_FORMAT, 4, "freqs") < 0) return NULL;
    if (get_buffer(lo, &l, PyBUF_FORMAT, 4, "lengths") < 0) goto rel_f;
    if (get_buffer(oo, &o, PyBUF_FORMAT, 4, "offsets") < 0) goto rel_l;
    Py_ssize_t T = l.len / 4;
    int32_t width = fwidth + 1;  /* cum has one more entry than the frequencies */
    if (o.len != l.len || f.len != 4 * T * fwidth || T > (1 << 20)) {
        PyErr_SetString(PyExc_ValueError, "freqs, lengths and offsets disagree in size");
        goto rel_o;
    }
    res = PyBytes_FromStringAndSize(NULL, tables_size((int32_t)T, width));
    if (!res) goto rel_o;
    char *p = PyBytes_AS_STRING(res);
    memset(p, 0, PyBytes_GET_SIZE(res));
    int32_t *h = (int32_t *)p, *len = h + 4, *off = len + T;
    uint32_t *cum = (uint32_t *)(off + T);
    uint16_t *hint = (uint16_t *)(cum + T * width);
    const int32_t *lens = l.buf, *offs = o.buf;
    int32_t valid = 0;
    for (Py_ssize_t t = 0; t < T; t++) {
        int ok = prepare_row((const int32_t *)f.buf + t * fwidth, lens[t], fwidth, cum + t * width,
                             hint + t * (1 << HINT_BITS));
        len[t] = ok ? lens[t] : -1;
        off[t] = offs[t];
        valid += ok;
    }
    h[0] = (int32_t)T;
    h[1] = width;
    h[2] = valid;
rel_o:
    PyBuffer_Release(&o);
rel_l:
    PyBuffer_Release(&l);
rel_f:
    PyBuffer_Release(&f);
    return res;
}

static inline int32_t row_of(const void *index, int wide, Py_ssize_t i) {
    return wide ? ((const int32_t *)index)[i] : ((const int16_t *)index)[i];
}

static inline int bad_row(const Tables *tb, int32_t t) { return t < 0 || t >= tb->T || tb->length[t] < 0; }

/* The symbol of value v in row t: v - offset, or the escape (the row's length) outside the row. */
static inline uint32_t symbol_of(const Tables *tb, int32_t t, int32_t v) {
    int64_t s = (int64_t)v - tb->offset[t];
    return s < 0 || s >= tb->length[t] ? (uint32_t)tb->length[t] : (uint32_t)s;
}

/* The escape count, or -1 where a row is not a valid table. */
static Py_ssize_t count_escapes(const Tables *tb, const int32_t *values, const void *index, int wide, Py_ssize_t n) {
    Py_ssize_t esc = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t t = row_of(index, wide, i);
        if (bad_row(tb, t)) return -1;
        esc += symbol_of(tb, t, values[i]) == (uint32_t)tb->length[t];
    }
    return esc;
}

/* Codes symbols n-1 .. 0 into the bytes before `end` (at most two per symbol, then the two
 * states); escape positions go to escapes[0 .. nesc) in ascending order. Returns the first byte. */
static unsigned char *encode_loop(const Tables *tb, const int32_t *values, const void *index, int wide,
                                  Py_ssize_t n, unsigned char *end, int32_t *escapes, Py_ssize_t nesc) {
    unsigned char *ptr = end;
    uint32_t x[2] = {RANS_L, RANS_L};
    for (Py_ssize_t i = n - 1; i >= 0; i--) {
        int32_t t = row_of(index, wide, i);
        uint32_t sym = symbol_of(tb, t, values[i]);
        if (sym == (uint32_t)tb->length[t]) escapes[--nesc] = (int32_t)i;
        const uint32_t *c = tb->cum + (Py_ssize_t)t * tb->width;
        uint32_t start = c[sym], freq = c[sym + 1] - start, s = x[i & 1];
        while (s >= freq << (31 - PROB_BITS)) {  /* keeps the next state below 2^31 */
            *--ptr = (unsigned char)s;
            s >>= 8;
        }
        x[i & 1] = ((s / freq) << PROB_BITS) + (s % freq) + start;
    }
    for (int k = 1; k >= 0; k--)
        for (int b = 0; b < 4; b++) *--ptr = (unsigned char)(x[k] >> (8 * b));
    return ptr;
}

/* encode(prepared, values int32 [n], index int16|int32 [n]) -> (coded bytes, escape positions int32 bytes) */
static PyObject *encode(PyObject *self, PyObject *args) {
    PyObject *to, *vo, *io, *res = NULL;
    Py_buffer tbuf, v, ix;
    Tables tb;
    if (!PyArg_ParseTuple(args, "OOO", &to, &vo, &io)) return NULL;
    if (get_buffer(to, &tbuf, PyBUF_SIMPLE, 0, "tables") < 0) return NULL;
    if (view_tables(tbuf.buf, tbuf.len, &tb) < 0) goto rel_t;
    if (get_buffer(vo, &v, PyBUF_FORMAT, 4, "values") < 0) goto rel_t;
    if (get_buffer(io, &ix, PyBUF_FORMAT, 0, "index") < 0) goto rel_v;
    Py_ssize_t n = v.len / 4, nesc;
    int wide = ix.itemsize == 4;
    if ((ix.itemsize != 2 && ix.itemsize != 4) || ix.len / ix.itemsize != n) {
        PyErr_SetString(PyExc_ValueError, "index must be int16 or int32, one per value");
        goto rel_i;
    }
    Py_BEGIN_ALLOW_THREADS
    nesc = count_escapes(&tb, v.buf, ix.buf, wide, n);
    Py_END_ALLOW_THREADS
    if (nesc < 0) {
        PyErr_SetString(PyExc_ValueError, "a table index names no valid table row");
        goto rel_i;
    }
    unsigned char *bytes = PyMem_Malloc(2 * (size_t)n + 8), *first, *end = bytes + 2 * n + 8;
    PyObject *eb = PyBytes_FromStringAndSize(NULL, 4 * nesc);
    if (!bytes || !eb) {
        if (!bytes) PyErr_NoMemory();
        goto free_all;
    }
    int32_t *escapes = (int32_t *)PyBytes_AS_STRING(eb);
    Py_BEGIN_ALLOW_THREADS
    first = encode_loop(&tb, v.buf, ix.buf, wide, n, end, escapes, nesc);
    Py_END_ALLOW_THREADS
    PyObject *wb = PyBytes_FromStringAndSize((const char *)first, end - first);
    if (wb) {
        res = PyTuple_Pack(2, wb, eb);
        Py_DECREF(wb);
    }
free_all:
    Py_XDECREF(eb);
    PyMem_Free(bytes);
rel_i:
    PyBuffer_Release(&ix);
rel_v:
    PyBuffer_Release(&v);
rel_t:
    PyBuffer_Release(&tbuf);
    return res;
}

enum { OK = 0, BAD_ROW, PAST_END, TOO_MANY_ESCAPES, BAD_STATE, BAD_END };
static const char *const DECODE_ERRORS[] = {
    "", "a table index names no valid table row", "the rANS decoder reads past the end of its data",
    "more escapes than the stream's escape list holds", "a rANS state out of range",
    "the rANS states do not end where the encoder started (or bytes are left)"};

static int decode_loop(const Tables *tb, const unsigned char *data, Py_ssize_t nbytes, const void *index, int wide,
                       Py_ssize_t n, int32_t *out, int32_t *escapes, Py_ssize_t max_escapes, Py_ssize_t *nesc) {
    const unsigned char *p = data, *end = data + nbytes;
    uint32_t x[2];
    if (end - p < 8) return PAST_END;
    for (int k = 0; k < 2; k++, p += 4)
        x[k] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
    if (x[0] < RANS_L || x[1] < RANS_L || x[0] >> 31 || x[1] >> 31) return BAD_STATE;
    Py_ssize_t e = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t t = row_of(index, wide, i);
        if (bad_row(tb, t)) return BAD_ROW;
        const uint32_t *c = tb->cum + (Py_ssize_t)t * tb->width;
        uint32_t s = x[i & 1], slot = s & (TOTAL - 1);
        uint32_t sym = tb->hint[((Py_ssize_t)t << HINT_BITS) + (slot >> HINT_SHIFT)];
        while (c[sym + 1] <= slot) sym++;
        s = (c[sym + 1] - c[sym]) * (s >> PROB_BITS) + slot - c[sym];
        while (s < RANS_L) {  /* s >= 2^7 here: at most two bytes */
            if (p >= end) return PAST_END;
            s = (s << 8) | *p++;
        }
        x[i & 1] = s;
        if ((int32_t)sym == tb->length[t]) {
            if (e >= max_escapes) return TOO_MANY_ESCAPES;
            escapes[e++] = (int32_t)i;
        }
        out[i] = (int32_t)sym + tb->offset[t];
    }
    *nesc = e;
    return x[0] == RANS_L && x[1] == RANS_L && p == end ? OK : BAD_END;
}

/* decode(prepared, coded bytes, index int16|int32 [n], out int32 [n] (written), max_escapes)
 *   -> escape positions (int32 bytes, in order). Raises ValueError on a malformed stream. */
static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *to, *wo, *io, *oo, *res = NULL;
    Py_ssize_t max_esc;
    Py_buffer tbuf, w, ix, out;
    Tables tb;
    if (!PyArg_ParseTuple(args, "OOOOn", &to, &wo, &io, &oo, &max_esc)) return NULL;
    if (get_buffer(to, &tbuf, PyBUF_SIMPLE, 0, "tables") < 0) return NULL;
    if (view_tables(tbuf.buf, tbuf.len, &tb) < 0) goto rel_t;
    if (get_buffer(wo, &w, PyBUF_SIMPLE, 0, "coded") < 0) goto rel_t;
    if (get_buffer(io, &ix, PyBUF_FORMAT, 0, "index") < 0) goto rel_w;
    if (get_buffer(oo, &out, PyBUF_FORMAT | PyBUF_WRITABLE, 4, "out") < 0) goto rel_i;
    Py_ssize_t n = out.len / 4;
    if ((ix.itemsize != 2 && ix.itemsize != 4) || ix.len / ix.itemsize != n || max_esc < 0 || max_esc > n) {
        PyErr_SetString(PyExc_ValueError, "index must be int16 or int32, one per output; escapes at most one per output");
        goto rel_o;
    }
    int32_t *esc = PyMem_Malloc(4 * (size_t)max_esc + 4);
    if (!esc) {
        PyErr_NoMemory();
        goto rel_o;
    }
    Py_ssize_t nesc = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = decode_loop(&tb, w.buf, w.len, ix.buf, ix.itemsize == 4, n, out.buf, esc, max_esc, &nesc);
    Py_END_ALLOW_THREADS
    if (err)
        PyErr_SetString(PyExc_ValueError, DECODE_ERRORS[err]);
    else
        res = PyBytes_FromStringAndSize((const char *)esc, 4 * nesc);
    PyMem_Free(esc);
rel_o:
    PyBuffer_Release(&out);
rel_i:
    PyBuffer_Release(&ix);
rel_w:
    PyBuffer_Release(&w);
rel_t:
    PyBuffer_Release(&tbuf);
    return res;
}

static PyMethodDef methods[] = {
    {"prepare", prepare, METH_VARARGS, "prepare(freqs, lengths, offsets, width) -> prepared tables"},
    {"encode", encode, METH_VARARGS, "encode(tables, values, index) -> (coded bytes, escape positions)"},
    {"decode", decode, METH_VARARGS, "decode(tables, coded, index, out, max_escapes) -> escape positions"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "Interleaved rANS (see rans.py).", -1, methods};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
