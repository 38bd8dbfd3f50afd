/* appliance.native._gso: TSO/USO super-packet splitting and CHECKSUM_PARTIAL completion in C.
 *
 * The compiled twin of appliance/tun/offload.py's py_gso_split and py_complete_checksum, byte for
 * byte and error for error (tests/unit/test_native_gso.py checks that with hypothesis). Why: with
 * TSO on, the TUN hands over TCP super-packets of up to 64 KB, and cutting them in Python (a copy,
 * struct packs and two checksums per segment, ~5 us per 1400-byte segment) cost more than having
 * the kernel cut them; in C the whole 64 KB costs a few microseconds.
 *
 * Hostile input: the packets come from the local kernel, but these functions take any bytes. Every
 * offset read from the packet or passed in is checked against the packet's length before use
 * (py_gso_split's docstring lists the rules, `split_layout` below is their one place here); a
 * packet that breaks one raises ValueError and nothing is read or written out of bounds. The GIL is
 * held throughout, and the buffer export keeps a bytearray from being resized under us while
 * segments are allocated. Not thread-safe beyond that (the data path is one thread).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define GSO_UDP_L4 5
#define GSO_ECN 0x80

/* One 64-bit ones'-complement addition (end-around carry). */
static inline uint64_t add_carry(uint64_t a, uint64_t b)
{
    a += b;
    return a + (a < b);
}

/* The ones'-complement sum of p[0..n) as big-endian 16-bit words, an odd last byte padded with a
 * zero, in offload.ones_sum's form: the sum modulo 0xFFFF (0..0xFFFE).
 * Why this works on any host: 64-bit words are summed in native order with end-around carry, which
 * keeps the value modulo 2**64-1 and so modulo 0xFFFF (a divisor of it); on a little-endian host
 * each 16-bit word is then byte-swapped, and swapping is multiplying by 256 modulo 0xFFFF, undone by
 * swapping the folded result (RFC 1071, "byte order independence"). */
static uint32_t ones_sum(const uint8_t *p, size_t n)
{
    uint64_t a0 = 0, a1 = 0, w0, w1;
    while (n >= 16) {                     /* two accumulators: independent carry chains */
        memcpy(&w0, p, 8);
        memcpy(&w1, p + 8, 8);
        a0 = add_carry(a0, w0);
        a1 = add_carry(a1, w1);
        p += 16;
        n -= 16;
    }
    if (n >= 8) {
        memcpy(&w0, p, 8);
        a0 = add_carry(a0, w0);
        p += 8;
        n -= 8;
    }
    if (n) {                              /* an even offset so far: the tail keeps its word parity */
        w1 = 0;
        memcpy(&w1, p, n);
        a1 = add_carry(a1, w1);
    }
    a0 = add_carry(a0, a1);
    uint64_t t = (a0 & 0xFFFFFFFFu) + (a0 >> 32);
    while (t > 0xFFFF)
        t = (t & 0xFFFF) + (t >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    t = ((t & 0xFF) << 8) | (t >> 8);
#endif
    return (uint32_t)(t % 0xFFFF);
}

static inline void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static inline uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The Python twin's ValueError messages, word for word (tests compare types, people read these). */
#define E_KIND "not a TCP or UDP super-packet of its IP version"
#define E_L4 "transport header not where the IP header ends"
#define E_HDR "transport header beyond the packet"
#define E_SIZE "no segment size"
#define E_LONG "segment longer than its length field"
#define E_FIELD "checksum field beyond the packet"

/* A super-packet's layout, checked (offload.py py_gso_split says which rules and why). */
struct layout {
    int v4;
    int proto;
    Py_ssize_t l4, hlen;
};

static int split_layout(const uint8_t *p, Py_ssize_t n, long gso_type, Py_ssize_t l4, struct layout *out)
{
    long kind = gso_type & ~(long)GSO_ECN;
    int ver = n ? p[0] >> 4 : 0;
    if ((kind == GSO_TCPV4 && ver == 4) || (kind == GSO_TCPV6 && ver == 6))
        out->proto = 6;
    else if (kind == GSO_UDP_L4 && (ver == 4 || ver == 6))
        out->proto = 17;
    else {
        PyErr_SetString(PyExc_ValueError, E_KIND);
        return -1;
    }
    out->v4 = ver == 4;
    if (out->v4 ? (l4 < 20 || l4 != (Py_ssize_t)(p[0] & 15) * 4) : l4 < 40) {
        PyErr_SetString(PyExc_ValueError, E_L4);
        return -1;
    }
    Py_ssize_t thl = 8;
    if (out->proto == 6) {
        if (l4 > n - 20) {
            PyErr_SetString(PyExc_ValueError, E_HDR);
            return -1;
        }
        thl = (p[l4 + 12] >> 4) * 4;
    }
    if (thl < (out->proto == 6 ? 20 : 8) || l4 > n - thl) {
        PyErr_SetString(PyExc_ValueError, E_HDR);
        return -1;
    }
    out->l4 = l4;
    out->hlen = l4 + thl;
    return 0;
}

/* Fill one segment: q holds the super-packet's headers and this segment's payload (seglen bytes). */
static void fix_segment(uint8_t *q, Py_ssize_t seglen, const struct layout *L, Py_ssize_t i, Py_ssize_t last,
                        uint32_t ip_id, uint32_t seq, Py_ssize_t gso_size, uint8_t flags)
{
    Py_ssize_t l4 = L->l4;
    uint32_t l4len = (uint32_t)(seglen - l4);
    uint32_t pseudo, s, c;
    if (L->v4) {
        put16(q + 2, (uint32_t)seglen);
        put16(q + 4, (ip_id + (uint32_t)i) & 0xFFFF);
        q[10] = q[11] = 0;
        s = ones_sum(q, (size_t)l4);
        /* offload.checksum: all-zero data gives 0xFFFF (cannot happen: byte 0 says version 4) */
        put16(q + 10, s ? 0xFFFF - s : 0);
        pseudo = (ones_sum(q + 12, 8) + (uint32_t)L->proto + l4len) % 0xFFFF;
    } else {
        put16(q + 4, (uint32_t)(seglen - 40));
        pseudo = (ones_sum(q + 8, 32) + (uint32_t)L->proto + l4len) % 0xFFFF;
    }
    uint8_t *t = q + l4;
    if (L->proto == 6) {
        uint32_t sq = seq + (uint32_t)((uint64_t)i * (uint64_t)gso_size);   /* mod 2**32 */
        t[4] = (uint8_t)(sq >> 24);
        t[5] = (uint8_t)(sq >> 16);
        t[6] = (uint8_t)(sq >> 8);
        t[7] = (uint8_t)sq;
        uint8_t f = flags;
        if (i)
            f &= (uint8_t)~0x80;          /* CWR only on the first segment */
        if (i != last)
            f &= (uint8_t)~0x09;          /* FIN and PSH only on the last */
        t[13] = f;
        t[16] = t[17] = 0;
        s = (pseudo + ones_sum(t, l4len)) % 0xFFFF;
        put16(t + 16, s ? 0xFFFF - s : 0);
    } else {
        put16(t + 4, l4len);
        t[6] = t[7] = 0;
        s = (pseudo + ones_sum(t, l4len)) % 0xFFFF;
        c = s ? 0xFFFF - s : 0;
        put16(t + 6, c ? c : 0xFFFF);     /* UDP sends a zero checksum as 0xFFFF */
    }
}

/* An integer argument, one beyond the C type's range clamped to its nearest end instead of raising
 * OverflowError: the Python twin takes any int, and for every rule above an out-of-range value and
 * the clamped one decide alike (a csum_start past the packet, a segment size past the payload, a
 * gso_type that is no kind), so both give the same result or the same ValueError. */
static int arg_clamped(PyObject *o, long long lo, long long hi, long long *out)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    *out = overflow > 0 || v > hi ? hi : overflow < 0 || v < lo ? lo : v;
    return 0;
}

static int arg_ssize(PyObject *o, Py_ssize_t *out)
{
    long long v;
    if (arg_clamped(o, PY_SSIZE_T_MIN, PY_SSIZE_T_MAX, &v) < 0)
        return -1;
    *out = (Py_ssize_t)v;
    return 0;
}

PyDoc_STRVAR(gso_split_doc,
"gso_split(pkt, gso_type, gso_size, csum_start) -> list[bytearray]\n\n"
"Cut a TCP (v4/v6) or UDP-L4 super-packet into segments; offload.py_gso_split's twin.");

static PyObject *gso_split(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "gso_split() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    long long type_arg;
    Py_ssize_t gso_size, l4;
    if (arg_clamped(args[1], LONG_MIN, LONG_MAX, &type_arg) < 0 || arg_ssize(args[2], &gso_size) < 0
            || arg_ssize(args[3], &l4) < 0)
        return NULL;
    long gso_type = (long)type_arg;
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    const uint8_t *p = b.buf;
    Py_ssize_t n = b.len;
    PyObject *out = NULL;
    struct layout L;
    if (split_layout(p, n, gso_type, l4, &L) < 0)
        goto done;
    Py_ssize_t hlen = L.hlen, payload_len = n - hlen;
    if (payload_len == 0) {               /* nothing to cut: the packet itself */
        PyObject *one = PyByteArray_FromStringAndSize((const char *)p, n);
        if (one == NULL)
            goto done;
        out = PyList_New(1);
        if (out == NULL) {
            Py_DECREF(one);
            goto done;
        }
        PyList_SET_ITEM(out, 0, one);
        goto done;
    }
    if (gso_size <= 0) {
        PyErr_SetString(PyExc_ValueError, E_SIZE);
        goto done;
    }
    Py_ssize_t first = gso_size < payload_len ? gso_size : payload_len;
    if (hlen + first - (L.v4 ? 0 : 40) > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, E_LONG);
        goto done;
    }
    Py_ssize_t nseg = payload_len / gso_size + (payload_len % gso_size != 0);
    out = PyList_New(nseg);
    if (out == NULL)
        goto done;
    uint32_t ip_id = L.v4 ? get16(p + 4) : 0;
    uint32_t seq = L.proto == 6 ? get32(p + L.l4 + 4) : 0;
    uint8_t flags = L.proto == 6 ? p[L.l4 + 13] : 0;
    for (Py_ssize_t i = 0; i < nseg; i++) {
        Py_ssize_t off = hlen + i * gso_size;                  /* < n: i < nseg */
        Py_ssize_t chunk = n - off < gso_size ? n - off : gso_size;
        Py_ssize_t seglen = hlen + chunk;
        PyObject *seg = PyByteArray_FromStringAndSize(NULL, seglen);
        if (seg == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        uint8_t *q = (uint8_t *)PyByteArray_AS_STRING(seg);
        memcpy(q, p, (size_t)hlen);
        memcpy(q + hlen, p + off, (size_t)chunk);
        fix_segment(q, seglen, &L, i, nseg - 1, ip_id, seq, gso_size, flags);
        PyList_SET_ITEM(out, i, seg);
    }
done:
    PyBuffer_Release(&b);
    return out;
}

PyDoc_STRVAR(complete_checksum_doc,
"complete_checksum(pkt, csum_start, csum_offset) -> None\n\n"
"CHECKSUM_PARTIAL: sum from csum_start and store at csum_start + csum_offset, in place;\n"
"offload.py_complete_checksum's twin.");

static PyObject *complete_checksum(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "complete_checksum() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t cs, co;
    if (arg_ssize(args[1], &cs) < 0 || arg_ssize(args[2], &co) < 0)
        return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(args[0], &b, PyBUF_SIMPLE) < 0)
        return NULL;
    uint8_t *p = b.buf;
    Py_ssize_t n = b.len;
    PyObject *ret = NULL;
    /* Bounds first, writability second: the order the Python twin finds them in. */
    if (cs < 0 || co < 0 || cs > n || co > n - cs - 2) {
        PyErr_SetString(PyExc_ValueError, E_FIELD);
        goto done;
    }
    if (b.readonly) {
        PyErr_Format(PyExc_TypeError, "argument must be read-write bytes-like object, not %.100s",
                     Py_TYPE(args[0])->tp_name);
        goto done;
    }
    uint32_t s = ones_sum(p + cs, (size_t)(n - cs));
    uint32_t c = s ? 0xFFFF - s : 0;
    Py_ssize_t proto_at = (p[0] >> 4) == 4 ? 9 : 6;
    if (c == 0 && proto_at < n && p[proto_at] == 17)
        c = 0xFFFF;                       /* UDP transmits a zero checksum as 0xFFFF */
    put16(p + cs + co, c);
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&b);
    return ret;
}

static PyMethodDef methods[] = {
    {"gso_split", (PyCFunction)(void (*)(void))gso_split, METH_FASTCALL, gso_split_doc},
    {"complete_checksum", (PyCFunction)(void (*)(void))complete_checksum, METH_FASTCALL, complete_checksum_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.native._gso",
    "TSO/USO segment splitting and checksum completion (appliance/tun/offload.py's twins).", -1, methods,
};

PyMODINIT_FUNC PyInit__gso(void)
{
    return PyModule_Create(&module);
}
