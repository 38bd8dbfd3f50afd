/* appliance.native._gro: GRO merging on TUN writes, the C twin of appliance.tun.offload.PyGroBatch.

Why in C (issue 11): on the receiving server's bulk path PyGroBatch.add was the largest own-time
function (~20% under py-spy), ~100 bytecodes per packet for what is a header compare and a memcpy.
The Python class stays the reference: its comments in offload.py are the spec (local delivery,
checksum verification of forwarded flows, PSH/closed, the odd-payload rule, GRO_MAX, the flow key)
and tests/unit/test_gro_differential.py holds this module to it output for output, owner call for
owner call.

Safety: the packet is untrusted (a VPN peer decrypted it). Every offset read below is checked
against the buffer's length first (the parse functions), and only offsets below the checked bounds
are read afterwards. Python code can run in the middle of add() (the `owner` callable, or a `local`
that is not a frozenset of bytes): it may call add/take on this same batch, so no pointer into the
item array or flow table is held across such a call, and the item array is detached from the batch
before take() builds its Python objects.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define GRO_MAX 65535
#define VNET_HDR_LEN 10
#define F_NEEDS_CSUM 1
#define GSO_TCPV4 1
#define GSO_TCPV6 4
#define TCP_ACK 0x10
#define TCP_PSH 0x08
#define TCP_PROTO_WORD 6
/* Longest flow key: tag + IPv6 fixed fields (4 + 37 + 4 + 2) + 40 bytes of TCP options. */
#define KEY_MAX 88
/* After a take(), storage grown past these by one huge batch is given back. */
#define KEEP_ITEMS 256
#define KEEP_SLOTS 512

/* One entry of the burst: a packet passed through as it came (a bytes object), or a flow's
   super-packet being built (a bytearray whose size may run ahead of `len` while merging). */
typedef struct {
    PyObject *obj;
    Py_ssize_t len;            /* flow: bytes in use; the bytearray's size is the capacity */
    uint32_t count;            /* segments merged into it */
    uint32_t next_seq;         /* the sequence number that continues it */
    uint32_t gso_size;         /* its first segment's payload length */
    uint32_t hsum;             /* local delivery: Σ segments' pseudo+header sums, mod 0xFFFF */
    uint8_t is_flow, iphl, thl, closed, psh, local;
    uint8_t keylen;
    Py_hash_t hash;
    unsigned char key[KEY_MAX];
} Item;

typedef struct {
    PyObject_HEAD
    Item *items;
    Py_ssize_t nitems, items_cap;
    /* Flow key -> item: open addressing, linear probing; a slot holds item index + 1 (0: empty). */
    Py_ssize_t *slots;
    size_t slots_cap;          /* 0 or a power of two */
    size_t nflows;
    Py_ssize_t last;           /* the flow item last merged into or made (skips the hash for a run) */
    Py_ssize_t bad_checksums;
    PyObject *local;           /* as set; `in` is asked of it unless the cache below answers */
    PyObject *owner;           /* callable(addrs+ports) -> bool, or None */
    int local_cached;          /* local is an exact frozenset of exact bytes: local4 answers */
    int local_nonempty;
    uint32_t *local4;          /* its 4-byte members */
    Py_ssize_t nlocal4;
} GroBatch;

static PyObject *zero_vnet_hdr;   /* bytes(10), shared by every pass-through entry */

/* ------------------------------------------------------------------ sums */

/* offload.ones_sum: the bytes as big-endian 16-bit words (an odd last byte as the high half of a
   word), summed mod 0xFFFF. Native 32-bit words into a 64-bit total: 2**32 ≡ 1 (mod 0xFFFF), so
   the total mod 0xFFFF is the sum of the words in native order; on a little-endian host that is
   the byte-swapped sum, and a swap is a multiplication by 256 (mod 0xFFFF), its own inverse. */
static uint32_t ones_sum(const unsigned char *p, size_t n)
{
    uint64_t a0 = 0, a1 = 0;
    uint32_t v, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, p + i, 4);
        memcpy(&w, p + i + 4, 4);
        a0 += v;
        a1 += w;
    }
    if (i < n) {
        unsigned char t[8] = {0};
        memcpy(t, p + i, n - i);
        memcpy(&v, t, 4);
        memcpy(&w, t + 4, 4);
        a0 += v;
        a1 += w;
    }
    uint32_t s = (uint32_t)((a0 % 0xFFFF + a1 % 0xFFFF) % 0xFFFF);
#if PY_LITTLE_ENDIAN
    s = (s * 256u) % 0xFFFF;
#endif
    return s;
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put16le(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

/* ------------------------------------------------------------------ parsing */

/* What a mergeable TCP data segment yields: the flow key and where its payload starts. */
typedef struct {
    unsigned char key[KEY_MAX];
    unsigned keylen;
    uint32_t seq;
    Py_ssize_t plen;
    unsigned thl, iphl;
    int psh;
} Segment;

/* The TCP part of a mergeable segment, for IPv4 and IPv6 alike: the key goes on at `k` (after the
   IP fields and ports) with the ack, window and options (their length implies thl) of the header
   at `tcp` (iphl bytes into the packet), then the segment's fields. -> 1 (mergeable). */
static inline int tcp_segment(Segment *s, unsigned char *k, const unsigned char *tcp, unsigned iphl, unsigned thl,
                              Py_ssize_t plen, unsigned flags)
{
    memcpy(k, tcp + 8, 4); k += 4;
    memcpy(k, tcp + 14, 2); k += 2;
    memcpy(k, tcp + 20, thl - 20); k += thl - 20;
    s->keylen = (unsigned)(k - s->key);
    s->seq = (uint32_t)tcp[4] << 24 | (uint32_t)tcp[5] << 16 | (uint32_t)tcp[6] << 8 | tcp[7];
    s->plen = plen;
    s->thl = thl;
    s->iphl = iphl;
    s->psh = (flags & TCP_PSH) != 0;
    return 1;
}

/* IPv4 without options (PyGroBatch.add's inline part). Reads bytes 0..39, then 40..20+thl-1:
   n >= 40 is checked first, and plen > 0 means 20 + thl < n. -> 1 mergeable, 0 not. */
static int parse_v4(const unsigned char *p, Py_ssize_t n, Segment *s)
{
    unsigned tot = (unsigned)p[2] << 8 | p[3];
    unsigned df = p[6], frag = p[7], proto = p[9], doff = p[32], flags = p[33];
    unsigned thl = (doff >> 4) * 4;
    Py_ssize_t plen = n - 20 - (Py_ssize_t)thl;
    if (proto != 6 || (df & 0xBF) || frag || (Py_ssize_t)tot != n || thl < 20 || plen <= 0 || (doff & 0x0F)
            || (flags & ~TCP_PSH) != TCP_ACK)
        return 0;   /* not TCP, a fragment, a bad length; SYN/FIN/RST/URG/ECE/CWR, no data, reserved bits */
    /* key: TOS, DF, TTL, addresses + ports, ack, window, options (their length implies thl) */
    unsigned char *k = s->key;
    *k++ = 4;
    *k++ = p[1];
    *k++ = (unsigned char)df;
    *k++ = p[8];
    memcpy(k, p + 12, 12); k += 12;
    return tcp_segment(s, k, p + 20, 20, thl, plen, flags);
}

/* offload._gro_candidate_v6: no extension headers. Reads 0..59 after n >= 60, then 60..40+thl-1
   where plen > 0 means 40 + thl < n. */
static int parse_v6(const unsigned char *p, Py_ssize_t n, Segment *s)
{
    if (n < 60 || p[0] >> 4 != 6 || p[6] != 6 || (Py_ssize_t)((unsigned)p[4] << 8 | p[5]) != n - 40)
        return 0;
    unsigned thl = (p[52] >> 4) * 4, flags = p[53];
    Py_ssize_t plen = n - 40 - (Py_ssize_t)thl;
    if (thl < 20 || (flags & ~TCP_PSH) != TCP_ACK || plen <= 0 || (p[52] & 0x0F))
        return 0;
    /* key: version/class/flow label, hop limit + addresses, ports, ack, window, options */
    unsigned char *k = s->key;
    *k++ = 6;
    memcpy(k, p, 4); k += 4;
    memcpy(k, p + 7, 37); k += 37;
    return tcp_segment(s, k, p + 40, 40, thl, plen, flags);
}

static int parse_segment(const unsigned char *p, Py_ssize_t n, Segment *s)
{
    if (n >= 40 && p[0] == 0x45)
        return parse_v4(p, n, s);
    return parse_v6(p, n, s);
}

/* ------------------------------------------------------------------ storage */

static Py_hash_t hash_key(const unsigned char *k, Py_ssize_t n)
{
    /* Python's keyed bytes hash (SipHash, per-process key): flows a peer chooses cannot be made to
       collide on purpose. */
#if PY_VERSION_HEX >= 0x030E0000
    return Py_HashBuffer(k, n);
#else
    return _Py_HashBytes(k, n);
#endif
}

static Item *new_item(GroBatch *self)
{
    if (self->nitems == self->items_cap) {
        Py_ssize_t cap = self->items_cap ? self->items_cap * 2 : 64;
        Item *a = PyMem_Realloc(self->items, (size_t)cap * sizeof(Item));
        if (a == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        self->items = a;
        self->items_cap = cap;
    }
    Item *it = &self->items[self->nitems];
    memset(it, 0, offsetof(Item, key));
    return it;
}

static Py_ssize_t flow_find(GroBatch *self, const Segment *s, Py_hash_t h)
{
    if (!self->slots_cap)
        return -1;
    size_t mask = self->slots_cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        Py_ssize_t v = self->slots[i];
        if (!v)
            return -1;
        const Item *it = &self->items[v - 1];
        if (it->hash == h && it->keylen == s->keylen && !memcmp(it->key, s->key, s->keylen))
            return v - 1;
    }
}

/* The slot for item `idx`'s key: the one holding that key already, else the first empty one. */
static size_t flow_slot(const GroBatch *self, const Item *it)
{
    size_t mask = self->slots_cap - 1;
    size_t i = (size_t)it->hash & mask;
    for (;; i = (i + 1) & mask) {
        Py_ssize_t v = self->slots[i];
        if (!v)
            return i;
        const Item *o = &self->items[v - 1];
        if (o->hash == it->hash && o->keylen == it->keylen && !memcmp(o->key, it->key, it->keylen))
            return i;
    }
}

/* The flow of item `idx` now continues in it (PyGroBatch: self.flows[key] = it). */
static int flow_set(GroBatch *self, Py_ssize_t idx)
{
    if ((self->nflows + 1) * 2 > self->slots_cap) {
        size_t cap = self->slots_cap ? self->slots_cap * 2 : 64;
        Py_ssize_t *old = self->slots;
        size_t oldcap = self->slots_cap;
        Py_ssize_t *a = PyMem_Calloc(cap, sizeof(Py_ssize_t));
        if (a == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->slots = a;
        self->slots_cap = cap;
        for (size_t i = 0; i < oldcap; i++)
            if (old[i])
                self->slots[flow_slot(self, &self->items[old[i] - 1])] = old[i];
        PyMem_Free(old);
    }
    size_t i = flow_slot(self, &self->items[idx]);
    if (!self->slots[i])
        self->nflows++;
    self->slots[i] = idx + 1;
    return 0;
}

/* Append `arg` as it came (PyGroBatch: self.items.append(bytes(p))). */
static PyObject *append_raw(GroBatch *self, PyObject *arg, const unsigned char *p, Py_ssize_t n)
{
    Item *it = new_item(self);
    if (it == NULL)
        return NULL;
    PyObject *b;
    if (PyBytes_CheckExact(arg)) {
        Py_INCREF(arg);                 /* bytes(b) is b */
        b = arg;
    } else if ((b = PyBytes_FromStringAndSize((const char *)p, n)) == NULL) {
        return NULL;
    }
    it->obj = b;
    it->len = n;
    it->count = 1;
    self->nitems++;
    Py_RETURN_NONE;
}

/* Grow a flow's bytearray for `more` bytes: its size doubles (the spare size is the capacity;
   take() trims it back, which keeps the allocation because it stays over half used). */
static int reserve(Item *it, Py_ssize_t more)
{
    Py_ssize_t cap = PyByteArray_GET_SIZE(it->obj), need = it->len + more;
    if (need <= cap)
        return 0;
    Py_ssize_t c = cap * 2;
    if (c < need)
        c = need;
    if (c > GRO_MAX)
        c = GRO_MAX > need ? GRO_MAX : need;
    return PyByteArray_Resize(it->obj, c);
}

/* ------------------------------------------------------------------ local delivery */

/* PyGroBatch: `bytes(p[16:20]) in self.local and (self.owner is None or self.owner(ap))`, for
   IPv4 only. May run Python code (owner, a generic `local`). -> 1/0, -1 with an exception set. */
static int is_local(GroBatch *self, const unsigned char *p)
{
    int r;
    if (self->local_cached) {
        if (!self->local_nonempty)
            return 0;
        uint32_t dst;
        memcpy(&dst, p + 16, 4);
        r = 0;
        for (Py_ssize_t i = 0; i < self->nlocal4 && !r; i++)
            r = self->local4[i] == dst;
        if (!r)
            return 0;
    } else {
        /* Read twice, as PyGroBatch does (`bool(self.local) and ... in self.local`): the truth
           test is Python code and may replace self->local; each read is held while it is used. */
        PyObject *local = Py_NewRef(self->local);
        r = PyObject_IsTrue(local);
        Py_DECREF(local);
        if (r > 0) {
            PyObject *dst = PyBytes_FromStringAndSize((const char *)p + 16, 4);
            local = Py_NewRef(self->local);
            r = dst ? PySequence_Contains(local, dst) : -1;
            Py_DECREF(local);
            Py_XDECREF(dst);
        }
        if (r <= 0)
            return r;
    }
    if (self->owner == Py_None)
        return 1;
    PyObject *owner = self->owner, *ap = PyBytes_FromStringAndSize((const char *)p + 12, 12);
    if (ap == NULL)
        return -1;
    Py_INCREF(owner);
    PyObject *res = PyObject_CallOneArg(owner, ap);
    Py_DECREF(owner);
    Py_DECREF(ap);
    if (res == NULL)
        return -1;
    r = PyObject_IsTrue(res);
    Py_DECREF(res);
    return r;
}

/* ------------------------------------------------------------------ add */

static PyObject *add_packet(GroBatch *self, PyObject *arg, const unsigned char *p, Py_ssize_t n)
{
    Segment s;
    if (!parse_segment(p, n, &s))
        return append_raw(self, arg, p, n);
    Py_ssize_t l4len = n - s.iphl;
    Py_hash_t h = 0;
    int hashed = 0;
    Py_ssize_t idx = -1;
    if (self->last >= 0) {
        const Item *it = &self->items[self->last];
        if (it->keylen == s.keylen && !memcmp(it->key, s.key, s.keylen))
            idx = self->last;
    }
    if (idx < 0) {
        h = hash_key(s.key, s.keylen);
        hashed = 1;
        idx = flow_find(self, &s, h);
    }
    int local;
    if (idx >= 0) {
        /* The flow's first segment in this batch decided for the batch. */
        local = self->items[idx].local;
    } else {
        local = s.iphl == 20 ? is_local(self, p) : 0;
        if (local < 0)
            return NULL;
        /* Python code may have run: idx stays -1 (as `it` stays None in PyGroBatch). */
    }
    uint32_t hsum = 0;
    if (local) {
        /* addresses + TCP header (checksum field included) + protocol + TCP length */
        hsum = (ones_sum(p + 12, 8 + s.thl) + TCP_PROTO_WORD + (uint32_t)l4len) % 0xFFFF;
    } else {
        uint32_t pseudo = s.iphl == 20 ? ones_sum(p + 12, 8) : ones_sum(p + 8, 32);
        if (((uint64_t)pseudo + TCP_PROTO_WORD + (uint64_t)l4len + ones_sum(p + s.iphl, (size_t)l4len)) % 0xFFFF) {
            self->bad_checksums++;
            return append_raw(self, arg, p, n);
        }
    }
    if (idx >= 0) {
        Item *it = &self->items[idx];
        if (!it->closed && s.seq == it->next_seq && s.plen <= (Py_ssize_t)it->gso_size
                && it->len + s.plen <= GRO_MAX && (!local || !(s.plen & 1))) {
            if (reserve(it, s.plen) < 0)
                return NULL;
            memcpy(PyByteArray_AS_STRING(it->obj) + it->len, p + s.iphl + s.thl, (size_t)s.plen);
            it->len += s.plen;
            it->count++;
            it->next_seq = s.seq + (uint32_t)s.plen;
            if (local)
                it->hsum = (it->hsum + hsum) % 0xFFFF;
            if (s.plen < (Py_ssize_t)it->gso_size || s.psh) {
                it->closed = 1;
                it->psh = it->psh || s.psh;
            }
            self->last = idx;
            Py_RETURN_NONE;
        }
    }
    if (local && (s.plen & 1))
        return append_raw(self, arg, p, n);  /* odd payloads shift the word alignment: alone */
    if (!hashed)
        h = hash_key(s.key, s.keylen);
    Item *it = new_item(self);
    if (it == NULL)
        return NULL;
    PyObject *buf = PyByteArray_FromStringAndSize((const char *)p, n);
    if (buf == NULL)
        return NULL;
    it->obj = buf;
    it->len = n;
    it->count = 1;
    it->next_seq = s.seq + (uint32_t)s.plen;
    it->gso_size = (uint32_t)s.plen;
    it->hsum = hsum;
    it->is_flow = 1;
    it->iphl = (uint8_t)s.iphl;
    it->thl = (uint8_t)s.thl;
    it->closed = it->psh = (uint8_t)s.psh;
    it->local = (uint8_t)local;
    it->keylen = (uint8_t)s.keylen;
    it->hash = h;
    memcpy(it->key, s.key, s.keylen);
    Py_ssize_t me = self->nitems++;
    if (flow_set(self, me) < 0) {
        self->nitems--;
        Py_DECREF(buf);
        return NULL;
    }
    self->last = me;
    Py_RETURN_NONE;
}

static PyObject *GroBatch_add(GroBatch *self, PyObject *arg)
{
    Py_buffer view;
    /* The export also keeps a bytearray argument from being resized while owner() runs. */
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *r = add_packet(self, arg, (const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return r;
}

/* ------------------------------------------------------------------ take */

/* offload._finish: fix lengths and checksums of a merged super-packet (trimmed to it->len);
   -> its virtio header. */
static PyObject *finish(Item *it)
{
    if (PyByteArray_Resize(it->obj, it->len) < 0)
        return NULL;
    unsigned char *buf = (unsigned char *)PyByteArray_AS_STRING(it->obj);
    unsigned n = (unsigned)it->len, iphl = it->iphl, l4len = n - iphl;
    unsigned char hdr[VNET_HDR_LEN];
    if (iphl == 20) {
        put16(buf + 2, n);
        buf[10] = buf[11] = 0;
        uint32_t s = ones_sum(buf, 20);
        /* offload.checksum: an all-zero header would sum to +0 (0xFFFF); a real one (0x45...) to -0 */
        put16(buf + 10, s ? 0xFFFF - s : 0);
    } else {
        put16(buf + 4, l4len);
    }
    if (it->psh)
        buf[iphl + 13] |= TCP_PSH;
    if (it->local) {
        /* Full checksum from the segments' sums; no NEEDS_CSUM: the kernel verifies the whole. */
        unsigned t = iphl + it->thl;
        buf[iphl + 16] = buf[iphl + 17] = 0;
        uint32_t merged = (ones_sum(buf + 12, t - 12) + TCP_PROTO_WORD + l4len) % 0xFFFF;
        uint32_t c = (it->hsum + 0xFFFF - merged) % 0xFFFF;
        put16(buf + iphl + 16, c ? c : 0xFFFF);
        hdr[0] = 0;
        hdr[1] = GSO_TCPV4;
        put16le(hdr + 2, t);
        put16le(hdr + 4, it->gso_size);
        put16le(hdr + 6, 0);
        put16le(hdr + 8, 0);
    } else {
        /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum. */
        uint32_t pseudo = ((iphl == 20 ? ones_sum(buf + 12, 8) : ones_sum(buf + 8, 32)) + TCP_PROTO_WORD + l4len)
                          % 0xFFFF;
        put16(buf + iphl + 16, pseudo);
        hdr[0] = F_NEEDS_CSUM;
        hdr[1] = iphl == 20 ? GSO_TCPV4 : GSO_TCPV6;
        put16le(hdr + 2, iphl + it->thl);
        put16le(hdr + 4, it->gso_size);
        put16le(hdr + 6, iphl);
        put16le(hdr + 8, 16);
    }
    return PyBytes_FromStringAndSize((const char *)hdr, VNET_HDR_LEN);
}

static void release_items(Item *items, Py_ssize_t from, Py_ssize_t n)
{
    for (Py_ssize_t i = from; i < n; i++)
        Py_XDECREF(items[i].obj);
}

/* Empty the batch; storage a huge batch grew is given back. */
static void reset(GroBatch *self)
{
    self->nitems = 0;
    self->nflows = 0;
    self->last = -1;
    if (self->slots_cap > KEEP_SLOTS) {
        PyMem_Free(self->slots);
        self->slots = NULL;
        self->slots_cap = 0;
    } else if (self->slots_cap) {
        memset(self->slots, 0, self->slots_cap * sizeof(Py_ssize_t));
    }
}

static PyObject *GroBatch_take(GroBatch *self, PyObject *Py_UNUSED(ignored))
{
    /* Detached first: building the list may run Python code (the GC), which may use this batch. */
    Item *items = self->items;
    Py_ssize_t n = self->nitems, cap = self->items_cap, i = 0;
    self->items = NULL;
    self->items_cap = 0;
    reset(self);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        goto done;
    for (; i < n; i++) {
        Item *it = &items[i];
        PyObject *hdr = it->count > 1 ? finish(it) : Py_NewRef(zero_vnet_hdr);
        PyObject *count = hdr ? PyLong_FromUnsignedLong(it->count) : NULL;
        PyObject *t = count ? PyTuple_New(3) : NULL;
        if (t == NULL) {
            Py_XDECREF(count);
            Py_XDECREF(hdr);
            Py_CLEAR(out);
            goto done;
        }
        PyTuple_SET_ITEM(t, 0, hdr);
        PyTuple_SET_ITEM(t, 1, it->obj);           /* the batch's reference moves to the tuple */
        PyTuple_SET_ITEM(t, 2, count);
        it->obj = NULL;
        PyList_SET_ITEM(out, i, t);
    }
done:
    release_items(items, i, n);                    /* what an error left */
    if (self->items == NULL && cap <= KEEP_ITEMS) {
        self->items = items;                       /* kept for the next batch */
        self->items_cap = cap;
    } else {
        PyMem_Free(items);
    }
    return out;
}

/* ------------------------------------------------------------------ type */

static int set_local(GroBatch *self, PyObject *v, void *Py_UNUSED(closure))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete local");
        return -1;
    }
    uint32_t *a = NULL;
    Py_ssize_t k = 0;
    int cached = 0, nonempty = 0;
    if (PyFrozenSet_CheckExact(v)) {
        /* Immutable and of exact bytes: `x in local` is a byte compare, done here in C. Anything
           else (a set, another container, other member types) is asked through Python. */
        Py_ssize_t size = PySet_GET_SIZE(v);
        a = PyMem_Malloc((size_t)(size ? size : 1) * sizeof(uint32_t));
        if (a == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        PyObject *iter = PyObject_GetIter(v), *m;
        if (iter == NULL) {
            PyMem_Free(a);
            return -1;
        }
        cached = 1;
        while ((m = PyIter_Next(iter)) != NULL) {
            if (!PyBytes_CheckExact(m))
                cached = 0;
            else if (PyBytes_GET_SIZE(m) == 4 && k < size)
                memcpy(&a[k++], PyBytes_AS_STRING(m), 4);
            Py_DECREF(m);
        }
        Py_DECREF(iter);
        if (PyErr_Occurred()) {
            PyMem_Free(a);
            return -1;
        }
        nonempty = size > 0;
        if (!cached) {
            PyMem_Free(a);
            a = NULL;
            k = 0;
        }
    }
    PyMem_Free(self->local4);
    self->local4 = a;
    self->nlocal4 = k;
    self->local_cached = cached;
    self->local_nonempty = nonempty;
    Py_INCREF(v);
    Py_SETREF(self->local, v);
    return 0;
}

static PyObject *get_local(GroBatch *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->local);
}

static int set_owner(GroBatch *self, PyObject *v, void *Py_UNUSED(closure))
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete owner");
        return -1;
    }
    Py_INCREF(v);
    Py_SETREF(self->owner, v);
    return 0;
}

static PyObject *get_owner(GroBatch *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->owner);
}

static int GroBatch_init(GroBatch *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"local", "owner", NULL};
    PyObject *local = NULL, *owner = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:GroBatch", kwlist, &local, &owner))
        return -1;
    PyObject *empty = NULL;
    if (local == NULL && (local = empty = PyFrozenSet_New(NULL)) == NULL)
        return -1;
    int r = set_local(self, local, NULL);
    Py_XDECREF(empty);
    if (r < 0)
        return -1;
    return set_owner(self, owner, NULL);
}

static PyObject *GroBatch_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    GroBatch *self = (GroBatch *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->last = -1;
    self->local = Py_NewRef(Py_None);
    self->owner = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static int GroBatch_traverse(GroBatch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->local);
    Py_VISIT(self->owner);
    return 0;
}

static int GroBatch_clear(GroBatch *self)
{
    /* None, not NULL: a finalizer elsewhere in the cycle may still call add(). */
    self->local_cached = 0;
    Py_SETREF(self->local, Py_NewRef(Py_None));
    Py_SETREF(self->owner, Py_NewRef(Py_None));
    return 0;
}

static void GroBatch_dealloc(GroBatch *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->local);
    Py_CLEAR(self->owner);
    release_items(self->items, 0, self->nitems);
    PyMem_Free(self->items);
    PyMem_Free(self->slots);
    PyMem_Free(self->local4);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t GroBatch_len(GroBatch *self)
{
    return self->nitems;
}

static PyMethodDef GroBatch_methods[] = {
    {"add", (PyCFunction)GroBatch_add, METH_O,
     "add(packet): queue one IP packet (any buffer; copied), merged into its flow's super-packet when "
     "it continues it."},
    {"take", (PyCFunction)GroBatch_take, METH_NOARGS,
     "take() -> [(virtio header, packet, segments in it)] and an empty batch."},
    {NULL}
};

static PyMemberDef GroBatch_members[] = {
    {"bad_checksums", T_PYSSIZET, offsetof(GroBatch, bad_checksums), 0,
     "segments of forwarded flows that failed their TCP checksum (sent alone)"},
    {NULL}
};

static PyGetSetDef GroBatch_getset[] = {
    {"local", (getter)get_local, (setter)set_local, "packed IPv4 addresses of this host", NULL},
    {"owner", (getter)get_owner, (setter)set_owner, "owner(addrs_ports) -> bool, or None", NULL},
    {NULL}
};

static PySequenceMethods GroBatch_as_sequence = {
    .sq_length = (lenfunc)GroBatch_len,
};

static PyTypeObject GroBatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.native._gro.GroBatch",
    .tp_doc = "Packets queued for one burst of TUN writes, TCP segments of a flow merged as they come "
              "(the C twin of appliance.tun.offload.PyGroBatch).",
    .tp_basicsize = sizeof(GroBatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = GroBatch_new,
    .tp_init = (initproc)GroBatch_init,
    .tp_dealloc = (destructor)GroBatch_dealloc,
    .tp_traverse = (traverseproc)GroBatch_traverse,
    .tp_clear = (inquiry)GroBatch_clear,
    .tp_methods = GroBatch_methods,
    .tp_members = GroBatch_members,
    .tp_getset = GroBatch_getset,
    .tp_as_sequence = &GroBatch_as_sequence,
};

static struct PyModuleDef gro_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appliance.native._gro",
    .m_doc = "GRO merging on TUN writes (the C twin of appliance.tun.offload.PyGroBatch).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__gro(void)
{
    if (PyType_Ready(&GroBatchType) < 0)
        return NULL;
    if (zero_vnet_hdr == NULL) {
        static const char zeros[VNET_HDR_LEN];
        if ((zero_vnet_hdr = PyBytes_FromStringAndSize(zeros, VNET_HDR_LEN)) == NULL)
            return NULL;
    }
    PyObject *m = PyModule_Create(&gro_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "GroBatch", (PyObject *)&GroBatchType) < 0
            || PyModule_AddIntConstant(m, "GRO_MAX", GRO_MAX) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
