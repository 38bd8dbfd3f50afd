/* appliance.native._udp: many datagrams from a connected UDP socket in one system call (recvmmsg).
 *
 * The compiled twin of appliance/transport/udp.py's py_recv_many. Why: a peer that sends no GSO
 * runs (OpenVPN's server sends every data packet and every ACK as its own datagram) gives UDP GRO
 * nothing to coalesce, so the client read one datagram per recvmsg, ~2 us of Python and a system
 * call each: 15% of our client's samples while downloading from OpenVPN's server, and its TCP ACKs
 * on upload. Here one call takes up to RECV_MAX datagrams, and each becomes a bytes object.
 *
 * What it returns: a list of (payload, GRO segment size or 0), at most `max_msgs` of them, in
 * arrival order; fewer than asked means the socket's queue was empty. An error with nothing read
 * raises OSError from errno (BlockingIOError when empty, ConnectionRefusedError after an ICMP port
 * unreachable, ...); an error after at least one datagram is kept by the kernel for the next call
 * (recvmmsg's rule), so nothing is lost. No source addresses: the socket is connected, so the kernel
 * delivers only its peer's datagrams (the caller uses this for connected sockets alone).
 *
 * Hostile input: the payloads are a network peer's bytes, but nothing here looks inside them; the
 * kernel writes at most each buffer's length and reports the length it wrote. The control message
 * (UDP_GRO's segment size) is the kernel's; its length is still checked before it is read. The
 * buffers are this module's own, used only while the GIL is held and copied out before any Python
 * code can run (see recv_many: making a list or tuple may run the cycle collector's finalizers), so
 * two sockets, or a call from a finalizer, can share them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>                   /* first: its pyconfig.h defines _GNU_SOURCE (recvmmsg) */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RECV_MAX 32          /* datagrams per call (udp.py's MANY_BATCH must not exceed it) */
#define RECV_SIZE 65535      /* as udp.py's RECV_SIZE: a GRO-coalesced run fits whole */

static unsigned char *arena;  /* RECV_MAX * RECV_SIZE, allocated at the first call */
static struct mmsghdr msgs[RECV_MAX];
static struct iovec iovs[RECV_MAX];
static union {
    struct cmsghdr align;
    unsigned char buf[CMSG_SPACE(sizeof(int))];
} controls[RECV_MAX];

/* The segment size of a GRO-coalesced datagram from its control messages, or 0 (not coalesced).
 * As py_recv_many reads it: a 2-byte value as unsigned 16 bits, otherwise the first 4 bytes as a
 * signed int. */
static long gro_segment(struct msghdr *mh)
{
    struct cmsghdr *c;
    for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_UDP || c->cmsg_type != UDP_GRO)
            continue;
        size_t len = c->cmsg_len >= CMSG_LEN(0) ? c->cmsg_len - CMSG_LEN(0) : 0;
        if (len == 2) {
            uint16_t v;
            memcpy(&v, CMSG_DATA(c), 2);
            return v;
        }
        if (len >= 4) {
            int v;
            memcpy(&v, CMSG_DATA(c), 4);
            return v;
        }
        return 0;                      /* too short to hold a size: not read (py: no usable value) */
    }
    return 0;
}

PyDoc_STRVAR(recv_many_doc,
"recv_many(fd, max_msgs) -> list of (bytes, gro_segment)\n\n"
"Up to max_msgs (1..32, more is taken as 32) datagrams from the connected UDP socket fd, without\n"
"blocking, in one recvmmsg. Fewer than asked: the queue is empty. Nothing read: OSError from errno.");

static PyObject *recv_many(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "recv_many(fd, max_msgs) takes exactly 2 arguments");
        return NULL;
    }
    long fdl = PyLong_AsLong(args[0]);
    if (fdl == -1 && PyErr_Occurred())
        return NULL;
    if (fdl < INT_MIN || fdl > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "fd out of range");
        return NULL;
    }
    int fd = (int)fdl;
    long want = PyLong_AsLong(args[1]);
    if (want == -1 && PyErr_Occurred())
        return NULL;
    if (want < 1) {
        PyErr_SetString(PyExc_ValueError, "max_msgs must be at least 1");
        return NULL;
    }
    if (want > RECV_MAX)
        want = RECV_MAX;
    if (arena == NULL) {
        arena = PyMem_RawMalloc((size_t)RECV_MAX * RECV_SIZE);
        if (arena == NULL)
            return PyErr_NoMemory();
    }
    for (long i = 0; i < want; i++) {
        iovs[i].iov_base = arena + (size_t)i * RECV_SIZE;
        iovs[i].iov_len = RECV_SIZE;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = controls[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(controls[i].buf);
    }
    int n = recvmmsg(fd, msgs, (unsigned int)want, MSG_DONTWAIT, NULL);
    if (n < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    /* Everything the kernel wrote (lengths, control messages, payloads) is copied out before any
     * object the cycle collector tracks is made: making one (a list, a tuple) may run a collection,
     * whose finalizers are arbitrary Python code that may call recv_many for another socket (or let
     * another thread do so), overwriting these shared buffers under us. bytes and int objects are
     * not tracked: making them runs no Python code. */
    PyObject *payloads[RECV_MAX], *segments[RECV_MAX];
    int made = 0;
    for (; made < n; made++) {
        size_t len = msgs[made].msg_len;
        if (len > RECV_SIZE)           /* never from the kernel; not trusted either */
            len = RECV_SIZE;
        payloads[made] = PyBytes_FromStringAndSize((const char *)iovs[made].iov_base, (Py_ssize_t)len);
        if (payloads[made] == NULL)
            goto fail;
        segments[made] = PyLong_FromLong(gro_segment(&msgs[made].msg_hdr));
        if (segments[made] == NULL) {
            Py_DECREF(payloads[made]);
            goto fail;
        }
    }
    PyObject *out = PyList_New(n);
    if (out == NULL)
        goto fail;
    for (int i = 0; i < n; i++) {
        PyObject *item = PyTuple_New(2);
        if (item == NULL) {            /* the items not yet in `out` are still ours to release */
            for (int j = i; j < n; j++) {
                Py_DECREF(payloads[j]);
                Py_DECREF(segments[j]);
            }
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, payloads[i]);   /* the tuple takes both references */
        PyTuple_SET_ITEM(item, 1, segments[i]);
        PyList_SET_ITEM(out, i, item);
    }
    return out;
fail:
    for (int j = 0; j < made; j++) {
        Py_DECREF(payloads[j]);
        Py_DECREF(segments[j]);
    }
    return NULL;
}

static PyMethodDef methods[] = {
    {"recv_many", (PyCFunction)(void (*)(void))recv_many, METH_FASTCALL, recv_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.native._udp",
    "Many datagrams from a connected UDP socket per system call (appliance/transport/udp.py's twin).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__udp(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "RECV_MAX", RECV_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
