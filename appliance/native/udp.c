/* appliance.native._udp: many datagrams from a UDP socket in one system call (recvmmsg).
 *
 * recv_many: the compiled twin of appliance/transport/udp.py's py_recv_many (a connected socket:
 * the client's); recv_from_many: of py_recv_from_many (any socket, with each datagram's source
 * address: the server's). Why: a peer that sends no GSO
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
 * recv_from_many(fd, max_msgs, True) (multihome): each address has a fifth/third item, the local
 * address the datagram was sent to, from IP_PKTINFO (ipi_spec_dst) or IPV6_PKTINFO (ipi6_addr, a
 * link-local one with "%ifindex"), as udp.py's local_of reads it; None when the kernel gave none.
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
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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
    /* UDP_GRO's size and (multihome) an in6_pktinfo, the larger of the two pktinfo structures */
    unsigned char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct in6_pktinfo))];
} controls[RECV_MAX];
#define LOCAL_TEXT (INET6_ADDRSTRLEN + 12)  /* an address, "%" and an interface index */
static struct sockaddr_storage names[RECV_MAX];   /* recv_from_many's source addresses */

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

/* The local address datagram `mh` was sent to, as text into `out` (LOCAL_TEXT bytes): 1, or 0 when
 * no pktinfo is there (or it is too short: never from the kernel). As udp.py's local_of. */
static int local_text(struct msghdr *mh, char *out)
{
    struct cmsghdr *c;
    for (c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        size_t len = c->cmsg_len >= CMSG_LEN(0) ? c->cmsg_len - CMSG_LEN(0) : 0;
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && len >= sizeof(struct in_pktinfo)) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            return inet_ntop(AF_INET, &pi.ipi_spec_dst, out, LOCAL_TEXT) != NULL;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && len >= sizeof(struct in6_pktinfo)) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            if (inet_ntop(AF_INET6, &pi.ipi6_addr, out, INET6_ADDRSTRLEN) == NULL)
                return 0;
            if (IN6_IS_ADDR_LINKLOCAL(&pi.ipi6_addr)) {
                size_t n = strlen(out);
                snprintf(out + n, LOCAL_TEXT - n, "%%%u", (unsigned int)pi.ipi6_ifindex);
            }
            return 1;
        }
    }
    return 0;
}

/* fd and max_msgs from the arguments (max_msgs capped at RECV_MAX), and the optional third
 * (`with_local`: its truth, 0 when absent or not allowed); 0, or -1 with an exception. */
static int parse_args(PyObject *const *args, Py_ssize_t nargs, const char *name, int *fd, long *want,
                      int *with_local)
{
    if (nargs != 2 && !(with_local != NULL && nargs == 3)) {
        PyErr_Format(PyExc_TypeError, with_local != NULL ? "%s(fd, max_msgs[, with_local]) takes 2 or 3 arguments"
                     : "%s(fd, max_msgs) takes exactly 2 arguments", name);
        return -1;
    }
    if (with_local != NULL) {
        *with_local = 0;
        if (nargs == 3 && (*with_local = PyObject_IsTrue(args[2])) < 0)
            return -1;
    }
    long fdl = PyLong_AsLong(args[0]);
    if (fdl == -1 && PyErr_Occurred())
        return -1;
    if (fdl < INT_MIN || fdl > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "fd out of range");
        return -1;
    }
    *fd = (int)fdl;
    *want = PyLong_AsLong(args[1]);
    if (*want == -1 && PyErr_Occurred())
        return -1;
    if (*want < 1) {
        PyErr_SetString(PyExc_ValueError, "max_msgs must be at least 1");
        return -1;
    }
    if (*want > RECV_MAX)
        *want = RECV_MAX;
    return 0;
}

/* One recvmmsg of up to `want` datagrams into the arena (and their source addresses into `names`
 * when asked): the number received, or -1 with an exception (OSError from errno, MemoryError). */
static int receive(int fd, long want, int with_names)
{
    if (arena == NULL) {
        arena = PyMem_RawMalloc((size_t)RECV_MAX * RECV_SIZE);
        if (arena == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (long i = 0; i < want; i++) {
        iovs[i].iov_base = arena + (size_t)i * RECV_SIZE;
        iovs[i].iov_len = RECV_SIZE;
        memset(&msgs[i], 0, sizeof(msgs[i]));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = controls[i].buf;
        msgs[i].msg_hdr.msg_controllen = sizeof(controls[i].buf);
        if (with_names) {
            msgs[i].msg_hdr.msg_name = &names[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(names[i]);
        }
    }
    int n = recvmmsg(fd, msgs, (unsigned int)want, MSG_DONTWAIT, NULL);
    if (n < 0)
        PyErr_SetFromErrno(PyExc_OSError);
    return n;
}

/* Datagram i's payload as bytes (a copy out of the arena). */
static PyObject *payload(int i)
{
    size_t len = msgs[i].msg_len;
    if (len > RECV_SIZE)               /* never from the kernel; not trusted either */
        len = RECV_SIZE;
    return PyBytes_FromStringAndSize((const char *)iovs[i].iov_base, (Py_ssize_t)len);
}

/* The result list of n whole items, taking their references; NULL (and the items released) when
 * it cannot be made. Made last, and filled with no allocation in between: making a tracked object
 * may run the cycle collector, and with it gc.callbacks and finalizers that can see every tracked
 * object (gc.get_objects): a list with empty slots among them would be read as if whole (copying
 * one dereferenced NULL). Each item is whole when made, for the same reason. */
static PyObject *list_of(PyObject **items, int n)
{
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        for (int i = 0; i < n; i++)
            Py_DECREF(items[i]);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        PyList_SET_ITEM(out, i, items[i]);
    return out;
}

/* The first n items released after a failure; NULL (the exception is set). */
static PyObject *release_items(PyObject **items, int n)
{
    for (int i = 0; i < n; i++)
        Py_DECREF(items[i]);
    return NULL;
}

/* Datagram i's payload and GRO segment size into payloads[i] and segments[i]: objects the cycle
 * collector does not track (making them runs no Python code). 0, or -1 with an exception and
 * neither held. */
static int parts_of(int i, PyObject **payloads, PyObject **segments)
{
    payloads[i] = payload(i);
    if (payloads[i] == NULL)
        return -1;
    segments[i] = PyLong_FromLong(gro_segment(&msgs[i].msg_hdr));
    if (segments[i] == NULL) {
        Py_DECREF(payloads[i]);
        return -1;
    }
    return 0;
}

/* The parts (parts_of) of datagrams from..n-1 released: those no item has taken yet. */
static void release_parts(PyObject **payloads, PyObject **segments, int from, int n)
{
    for (int j = from; j < n; j++) {
        Py_DECREF(payloads[j]);
        Py_DECREF(segments[j]);
    }
}

PyDoc_STRVAR(recv_many_doc,
"recv_many(fd, max_msgs) -> list of (bytes, gro_segment)\n\n"
"Up to max_msgs (1..32, more is taken as 32) datagrams from the connected UDP socket fd, without\n"
"blocking, in one recvmmsg. Fewer than asked: the queue is empty. Nothing read: OSError from errno.");

static PyObject *recv_many(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    long want;
    if (parse_args(args, nargs, "recv_many", &fd, &want, NULL) < 0)
        return NULL;
    int n = receive(fd, want, 0);
    if (n < 0)
        return NULL;
    /* Everything the kernel wrote (lengths, control messages, payloads) is copied out before any
     * object the cycle collector tracks is made: making one (a list, a tuple) may run a collection,
     * whose finalizers are arbitrary Python code that may call recv_many for another socket (or let
     * another thread do so), overwriting these shared buffers under us. bytes and int objects are
     * not tracked: making them runs no Python code. Then the items, and the list last (list_of). */
    PyObject *payloads[RECV_MAX], *segments[RECV_MAX];
    int made = 0;
    for (; made < n; made++) {
        if (parts_of(made, payloads, segments) < 0)
            goto fail;
    }
    PyObject *items[RECV_MAX];
    for (int i = 0; i < n; i++) {
        PyObject *item = PyTuple_New(2);
        if (item == NULL) {            /* the parts not yet in an item are still ours to release */
            release_parts(payloads, segments, i, n);
            return release_items(items, i);
        }
        PyTuple_SET_ITEM(item, 0, payloads[i]);   /* the tuple takes both references */
        PyTuple_SET_ITEM(item, 1, segments[i]);
        items[i] = item;
    }
    return list_of(items, n);
fail:
    release_parts(payloads, segments, 0, made);
    return NULL;
}

/* A source address, as plain C values copied out of `names` (see recv_from_many). */
struct source {
    int family;                        /* AF_INET, AF_INET6, or 0: no address / another family */
    int port;
    unsigned int flowinfo, scope_id;   /* AF_INET6 only */
    PyObject *host;                    /* str, a new reference (shared by equal neighbours) */
    PyObject *local;                   /* multihome: str or None, a new reference (shared likewise) */
    char local_buf[LOCAL_TEXT];        /* its text ("" when None) */
};

/* The references of sources from..n-1 released: those no address tuple holds yet. */
static void release_sources(struct source *sources, int from, int n)
{
    for (int j = from; j < n; j++) {
        Py_XDECREF(sources[j].host);
        Py_XDECREF(sources[j].local);
    }
}

/* multihome: datagram i's local address into src->local (the previous one's object when the text
 * is the same). 0, or -1 with an exception. */
static int local_of(int i, struct source *src, const struct source *prev)
{
    if (!local_text(&msgs[i].msg_hdr, src->local_buf))
        src->local_buf[0] = '\0';
    if (prev != NULL && prev->local != NULL && strcmp(prev->local_buf, src->local_buf) == 0) {
        Py_INCREF(prev->local);
        src->local = prev->local;
        return 0;
    }
    if (src->local_buf[0] == '\0') {
        Py_INCREF(Py_None);
        src->local = Py_None;
        return 0;
    }
    src->local = PyUnicode_FromString(src->local_buf);
    return src->local == NULL ? -1 : 0;
}

/* names[i] -> *src, the host as Python's socket module writes it (makesockaddr: inet_ntop, no
 * scope suffix; the scope id is the tuple's fourth item). 0, or -1 with an exception. */
static int source_of(int i, struct source *src, const struct source *prev)
{
    const struct sockaddr_storage *ss = &names[i];
    socklen_t len = msgs[i].msg_hdr.msg_namelen;
    char buf[INET6_ADDRSTRLEN];
    src->family = 0;
    src->host = NULL;
    if (len >= sizeof(struct sockaddr_in) && ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        src->family = AF_INET;
        src->port = ntohs(a->sin_port);
        src->flowinfo = src->scope_id = 0;
        if (prev != NULL && prev->family == AF_INET && i > 0
            && memcmp(&((const struct sockaddr_in *)&names[i - 1])->sin_addr, &a->sin_addr, sizeof(a->sin_addr)) == 0) {
            Py_INCREF(prev->host);     /* a burst from one peer: one str for all of it */
            src->host = prev->host;
            return 0;
        }
        if (inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf)) == NULL) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    } else if (len >= sizeof(struct sockaddr_in6) && ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        src->family = AF_INET6;
        src->port = ntohs(a->sin6_port);
        src->flowinfo = ntohl(a->sin6_flowinfo);
        src->scope_id = a->sin6_scope_id;
        if (prev != NULL && prev->family == AF_INET6 && i > 0
            && memcmp(&((const struct sockaddr_in6 *)&names[i - 1])->sin6_addr, &a->sin6_addr, sizeof(a->sin6_addr)) == 0) {
            Py_INCREF(prev->host);
            src->host = prev->host;
            return 0;
        }
        if (inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf)) == NULL) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
    } else {
        return 0;                      /* not an inet address (never on our sockets): None */
    }
    src->host = PyUnicode_FromString(buf);
    return src->host == NULL ? -1 : 0;
}

static int same_source(const struct source *a, const struct source *b)
{
    return a->family != 0 && a->family == b->family && a->host == b->host && a->port == b->port
           && a->flowinfo == b->flowinfo && a->scope_id == b->scope_id && a->local == b->local;
}

PyDoc_STRVAR(recv_from_many_doc,
"recv_from_many(fd, max_msgs) -> list of (bytes, gro_segment, address)\n\n"
"Up to max_msgs (1..32, more is taken as 32) datagrams from the UDP socket fd, without blocking, in\n"
"one recvmmsg, each with its source address as socket.recvfrom gives it: (host, port) for IPv4,\n"
"(host, port, flowinfo, scope_id) for IPv6; with_local true (multihome): the local address the\n"
"datagram was sent to appended (str, or None). Fewer than asked: the queue is empty. Nothing read:\n"
"OSError from errno.");

static PyObject *recv_from_many(PyObject *Py_UNUSED(self), PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    long want;
    int with_local;
    if (parse_args(args, nargs, "recv_from_many", &fd, &want, &with_local) < 0)
        return NULL;
    int n = receive(fd, want, 1);
    if (n < 0)
        return NULL;
    /* As in recv_many: first every payload, segment size and address is copied out of the shared
     * buffers into untracked objects (bytes, int, str) and C values; only then are the tuples
     * made, which may run Python code, and the list last (list_of). */
    PyObject *payloads[RECV_MAX], *segments[RECV_MAX];
    struct source sources[RECV_MAX];
    int made = 0;
    for (; made < n; made++) {
        if (parts_of(made, payloads, segments) < 0)
            goto fail;
        sources[made].local = NULL;
        if (source_of(made, &sources[made], made > 0 ? &sources[made - 1] : NULL) < 0) {
            Py_DECREF(payloads[made]);
            Py_DECREF(segments[made]);
            goto fail;
        }
        if (with_local && local_of(made, &sources[made], made > 0 ? &sources[made - 1] : NULL) < 0) {
            Py_DECREF(payloads[made]);
            Py_DECREF(segments[made]);
            Py_XDECREF(sources[made].host);
            goto fail;
        }
    }
    PyObject *items[RECV_MAX];
    PyObject *addr = NULL;             /* the previous datagram's address tuple (borrowed from items) */
    for (int i = 0; i < n; i++) {
        PyObject *item = NULL;
        if (addr != NULL && same_source(&sources[i], &sources[i - 1])) {
            Py_INCREF(addr);           /* a burst from one peer: one tuple, as one dict key */
        } else if (sources[i].family == AF_INET) {
            addr = with_local ? Py_BuildValue("(OiO)", sources[i].host, sources[i].port, sources[i].local)
                              : Py_BuildValue("(Oi)", sources[i].host, sources[i].port);
        } else if (sources[i].family == AF_INET6) {
            addr = with_local ? Py_BuildValue("(OiIIO)", sources[i].host, sources[i].port, sources[i].flowinfo,
                                              sources[i].scope_id, sources[i].local)
                              : Py_BuildValue("(OiII)", sources[i].host, sources[i].port, sources[i].flowinfo,
                                              sources[i].scope_id);
        } else {
            addr = Py_None;
            Py_INCREF(addr);
        }
        if (addr != NULL)
            item = PyTuple_New(3);
        if (item == NULL) {            /* the parts not yet in an item are still ours to release */
            Py_XDECREF(addr);
            release_parts(payloads, segments, i, n);
            release_sources(sources, i, n);
            return release_items(items, i);
        }
        PyTuple_SET_ITEM(item, 0, payloads[i]);   /* the tuple takes these references */
        PyTuple_SET_ITEM(item, 1, segments[i]);
        PyTuple_SET_ITEM(item, 2, addr);
        Py_XDECREF(sources[i].host);   /* the address tuple holds its own references */
        Py_XDECREF(sources[i].local);
        items[i] = item;
    }
    return list_of(items, n);
fail:
    release_parts(payloads, segments, 0, made);
    release_sources(sources, 0, made);
    return NULL;
}

/* One datagram's length and first byte: bytes directly, anything else through its buffer. */
static int peek(PyObject *o, Py_ssize_t *len, int *first)
{
    if (PyBytes_CheckExact(o)) {
        *len = PyBytes_GET_SIZE(o);
        *first = *len ? (unsigned char)PyBytes_AS_STRING(o)[0] : -1;
        return 0;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(o, &b, PyBUF_SIMPLE) < 0)
        return -1;
    *len = b.len;
    *first = b.len ? ((unsigned char *)b.buf)[0] : -1;
    PyBuffer_Release(&b);
    return 0;
}

static int is_data(int first)        /* P_DATA_V1 (6) or P_DATA_V2 (9): udp.py's _DATA_FIRST */
{
    return first >= 0 && ((first >> 3) == 6 || (first >> 3) == 9);
}

PyDoc_STRVAR(gso_runs_doc,
"gso_runs(datagrams, max_segments, max_bytes) -> list[(start, end, size)]\n\n"
"transport/udp.py py_runs compiled: the GSO runs of a batch to send (data packets of equal size,\n"
"the last one of a run may be shorter, at most max_segments datagrams and max_bytes bytes; any\n"
"other datagram, or an empty one, alone).");

/* Why: the cut ran a Python loop over every datagram a client sends (~700 a MB), ~0.1 us each.
 * Nothing here reads past a datagram's first byte; the sequence is copied into a tuple first, so
 * no buffer export can change what is walked. */
static PyObject *gso_runs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "gso_runs() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t max_segs = PyLong_AsSsize_t(args[1]);
    if (max_segs == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[2]);
    if (max_bytes == -1 && PyErr_Occurred())
        return NULL;
    PyObject *seq = PySequence_Tuple(args[0]);
    if (seq == NULL)
        return NULL;
    PyObject *out = PyList_New(0);
    Py_ssize_t n = PyTuple_GET_SIZE(seq), i = 0;
    while (out != NULL && i < n) {
        Py_ssize_t size, ln, j = i + 1;
        int first, f;
        if (peek(PyTuple_GET_ITEM(seq, i), &size, &first) < 0)
            goto fail;
        if (size && is_data(first)) {
            Py_ssize_t total = size;
            while (j < n && j - i < max_segs) {
                if (peek(PyTuple_GET_ITEM(seq, j), &ln, &f) < 0)
                    goto fail;
                if (ln > size || ln == 0 || !is_data(f) || total + ln > max_bytes)
                    break;
                total += ln;
                j++;
                if (ln < size)
                    break;
            }
        }
        PyObject *run = Py_BuildValue("(nnn)", i, j, size);
        if (run == NULL || PyList_Append(out, run) < 0) {
            Py_XDECREF(run);
            goto fail;
        }
        Py_DECREF(run);
        i = j;
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"gso_runs", (PyCFunction)(void (*)(void))gso_runs, METH_FASTCALL, gso_runs_doc},
    {"recv_many", (PyCFunction)(void (*)(void))recv_many, METH_FASTCALL, recv_many_doc},
    {"recv_from_many", (PyCFunction)(void (*)(void))recv_from_many, METH_FASTCALL, recv_from_many_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.native._udp",
    "Many datagrams from a UDP socket per system call (appliance/transport/udp.py's twins).", -1,
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
