/* appliance.native._aead: the AEAD data channel's seal and open (OpenVPN 2.4+ wire format) over
 * OpenSSL's EVP, byte for byte what appliance/openvpn/datachannel.py's Python path does (that path
 * stays the reference; tests/unit/test_native_aead.py compares them).
 *
 * Why C (issue 11): per packet the Python path paid slicing, joining ciphertext and tag, a struct
 * call and `cryptography`'s call overhead around ~0.5 us of AES-GCM; together more than the cipher.
 * Here a Key holds one direction's EVP_CIPHER_CTX, keyed once; per packet only the nonce is set,
 * and seal writes the whole wire packet into ONE new bytes object (or a caller's buffer).
 *
 * Wire layout (the packet's own opcode picks it on open, as DataKey does):
 *   P_DATA_V2 (head_len 4): op|key_id|peer-id (4) | packet-id (4) | tag (16) | ct; AAD = first 8 bytes
 *   P_DATA_V1 (head_len 1): op|key_id (1)         | packet-id (4) | tag (16) | ct; AAD = packet-id
 *   nonce = packet-id (4, big-endian) || implicit IV (8)
 *
 * The replay window stays in Python: open() reads the packet id, and returns None WITHOUT
 * decrypting when the id is not above the caller's newest one (the caller consults its window and
 * calls again with highest -1); the id of the last packet parsed is `last_pid`, for the window's
 * update after authentication.
 *
 * Attacker's view: every length is checked before a byte is read; the tag is checked by OpenSSL
 * (EVP_DecryptFinal_ex), never compared here; on failure the partial plaintext is wiped and
 * dropped; lengths above MAX_LEN are refused (EVP counts in int).
 *
 * Threads: a Key is used by the single-threaded pump. Every method holds the GIL throughout (no
 * Py_BEGIN_ALLOW_THREADS: ~1 us of work is not worth a release), so no other thread can touch the
 * context or change a buffer under us; nothing more is needed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#define TAG_LEN 16
#define PID_LEN 4
#define IMPLICIT_IV_LEN 8
#define NONCE_LEN (PID_LEN + IMPLICIT_IV_LEN)
#define OP_DATA_V2 9
#define V2_HEAD 4
#define V1_HEAD 1
/* EVP lengths are int: refuse anything near INT_MAX rather than let a length wrap. */
#define MAX_LEN ((Py_ssize_t)INT_MAX - 64)

static PyObject *OpenError;     /* ValueError subclass; DataKey turns it into BadPacket */

typedef struct {
    PyObject_HEAD
    EVP_CIPHER_CTX *ctx;
    unsigned char iv[IMPLICIT_IV_LEN];
    int sealing;                /* 1: this Key seals (encrypt context); 0: it opens */
    unsigned int last_pid;      /* packet id of the last packet open() parsed */
} Key;

static const EVP_CIPHER *cipher_by_name(const char *name)
{
    /* Every AEAD in appliance/openvpn/ciphers.py REGISTRY, by OpenVPN's upper-case name. */
    if (strcmp(name, "AES-128-GCM") == 0)
        return EVP_aes_128_gcm();
    if (strcmp(name, "AES-192-GCM") == 0)
        return EVP_aes_192_gcm();
    if (strcmp(name, "AES-256-GCM") == 0)
        return EVP_aes_256_gcm();
    if (strcmp(name, "CHACHA20-POLY1305") == 0)
        return EVP_chacha20_poly1305();
    return NULL;
}

static inline void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline uint32_t get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static PyObject *openssl_error(const char *what)
{
    ERR_clear_error();      /* leave nothing in the thread's queue for Python's own _ssl/_hashlib */
    PyErr_Format(PyExc_RuntimeError, "OpenSSL %s failed", what);
    return NULL;
}

/* ---------------------------------------------------------------- construction */

static PyObject *Key_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"cipher", "key", "implicit_iv", "sealing", NULL};
    const char *name;
    Py_buffer key, iv;
    int sealing;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sy*y*p:Key", kwlist, &name, &key, &iv, &sealing))
        return NULL;
    Key *self = NULL;
    const EVP_CIPHER *cipher = cipher_by_name(name);
    if (cipher == NULL) {
        PyErr_Format(PyExc_ValueError, "unsupported AEAD cipher %s", name);
        goto done;
    }
    if (key.len != EVP_CIPHER_key_length(cipher)) {
        PyErr_Format(PyExc_ValueError, "%s needs a %d-byte key, got %zd", name,
                     EVP_CIPHER_key_length(cipher), key.len);
        goto done;
    }
    if (iv.len != IMPLICIT_IV_LEN) {
        PyErr_SetString(PyExc_ValueError, "AEAD implicit IV must be 8 bytes");
        goto done;
    }
    self = (Key *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto done;
    self->sealing = sealing;
    memcpy(self->iv, iv.buf, IMPLICIT_IV_LEN);
    self->ctx = EVP_CIPHER_CTX_new();
    /* The key goes straight from the caller's buffer into the context (no copy of ours);
     * EVP_CIPHER_CTX_free wipes the context's. The default nonce length (12) is OpenVPN's. */
    if (self->ctx == NULL
        || EVP_CipherInit_ex(self->ctx, cipher, NULL, (const unsigned char *)key.buf, NULL, sealing) != 1) {
        Py_CLEAR(self);
        openssl_error("cipher set-up");
    }
done:
    PyBuffer_Release(&key);
    PyBuffer_Release(&iv);
    return (PyObject *)self;
}

static void Key_dealloc(Key *self)
{
    EVP_CIPHER_CTX_free(self->ctx);         /* cleanses the key schedule */
    OPENSSL_cleanse(self->iv, sizeof self->iv);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---------------------------------------------------------------- seal */

/* Arguments shared by seal and seal_into: header word, header length (1 or 4), packet id. */
static int parse_head(PyObject *const *args, uint32_t *word, int *head_len, uint32_t *pid)
{
    unsigned long w = PyLong_AsUnsignedLong(args[0]);
    if (w == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    long hl = PyLong_AsLong(args[1]);
    if (hl == -1 && PyErr_Occurred())
        return -1;
    unsigned long p = PyLong_AsUnsignedLong(args[2]);
    if (p == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if (hl != V2_HEAD && hl != V1_HEAD) {
        PyErr_SetString(PyExc_ValueError, "head_len must be 1 (P_DATA_V1) or 4 (P_DATA_V2)");
        return -1;
    }
    if (w > (hl == V2_HEAD ? 0xFFFFFFFFUL : 0xFFUL)) {
        PyErr_SetString(PyExc_OverflowError, "head_word does not fit head_len bytes");
        return -1;
    }
    if (p > 0xFFFFFFFFUL) {
        PyErr_SetString(PyExc_OverflowError, "packet id does not fit 32 bits");
        return -1;
    }
    *word = (uint32_t)w;
    *head_len = (int)hl;
    *pid = (uint32_t)p;
    return 0;
}

/* Write the sealed packet of `n` payload bytes at `pl` into `out` (head_len + 20 + n bytes).
 * `pl` may be exactly the ciphertext's place in `out` (in place), otherwise disjoint from `out`. */
static int seal_to(Key *self, unsigned char *out, uint32_t word, int head_len, uint32_t pid,
                   const unsigned char *pl, int n)
{
    unsigned char nonce[NONCE_LEN];
    const unsigned char *aad;
    int aad_len, len = 0, fin = 0, ok;
    if (head_len == V2_HEAD) {
        put_be32(out, word);
        aad = out;
        aad_len = V2_HEAD + PID_LEN;
    } else {
        out[0] = (unsigned char)word;
        aad = out + V1_HEAD;
        aad_len = PID_LEN;
    }
    put_be32(out + head_len, pid);
    put_be32(nonce, pid);
    memcpy(nonce + PID_LEN, self->iv, IMPLICIT_IV_LEN);
    unsigned char *tag = out + head_len + PID_LEN;
    unsigned char *ct = tag + TAG_LEN;
    ok = EVP_EncryptInit_ex(self->ctx, NULL, NULL, NULL, nonce) == 1
         && EVP_EncryptUpdate(self->ctx, NULL, &len, aad, aad_len) == 1
         && (n == 0 || EVP_EncryptUpdate(self->ctx, ct, &len, pl, n) == 1)
         && EVP_EncryptFinal_ex(self->ctx, ct + (n ? len : 0), &fin) == 1
         && (n ? len : 0) + fin == n
         && EVP_CIPHER_CTX_ctrl(self->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, tag) == 1;
    OPENSSL_cleanse(nonce, sizeof nonce);
    return ok ? 0 : -1;
}

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
        return -1;
    }
    return 0;
}

static int check_sealing(Key *self)
{
    if (!self->sealing) {
        PyErr_SetString(PyExc_TypeError, "this Key opens; it does not seal");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(seal_doc,
"seal(head_word, head_len, pid, payload) -> bytes\n\n"
"The whole wire packet: header (head_len 4: P_DATA_V2 op|peer-id word; 1: P_DATA_V1 op byte),\n"
"packet id, tag, ciphertext. The caller counts packet ids (never reuse one: the nonce).");

static PyObject *Key_seal(Key *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t word, pid;
    int head_len;
    Py_buffer pl;
    if (check_nargs("seal", nargs, 4) < 0 || check_sealing(self) < 0
        || parse_head(args, &word, &head_len, &pid) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[3], &pl, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *res = NULL;
    if (pl.len > MAX_LEN) {
        PyErr_SetString(PyExc_OverflowError, "payload too long");
        goto done;
    }
    res = PyBytes_FromStringAndSize(NULL, head_len + PID_LEN + TAG_LEN + pl.len);
    if (res == NULL)
        goto done;
    if (seal_to(self, (unsigned char *)PyBytes_AS_STRING(res), word, head_len, pid, pl.buf, (int)pl.len) < 0) {
        Py_CLEAR(res);
        openssl_error("seal");
    }
done:
    PyBuffer_Release(&pl);
    return res;
}

PyDoc_STRVAR(seal_many_doc,
"seal_many(head_word, head_len, first_pid, payloads) -> list[bytes]\n\n"
"seal() of each payload of the list `payloads`, with packet ids first_pid, first_pid + 1, ...:\n"
"one call for a batch read from the TUN. The caller counts the ids first (never reuse one).");

/* Why: on the sending path every packet paid for three Python calls around its seal (the batch
 * loop, Session.encrypt, DataKey.seal); one call per batch leaves the AEAD and the allocation.
 * The results are held in a C array and the list is made last, once nothing more is allocated
 * or run: no collector pass (a gc callback, say) can meet a half-filled list. */
static PyObject *Key_seal_many(Key *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t word, pid;
    int head_len;
    if (check_nargs("seal_many", nargs, 4) < 0 || check_sealing(self) < 0
        || parse_head(args, &word, &head_len, &pid) < 0)
        return NULL;
    /* A tuple of our own: a payload's buffer export (a __buffer__ in Python, 3.12+) cannot
     * shrink what we walk. */
    PyObject *seq = PySequence_Tuple(args[3]);
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(seq), done = 0;
    PyObject *res = NULL, **out = NULL;
    if (n > 0 && (uint64_t)pid + (uint64_t)(n - 1) > 0xFFFFFFFFULL) {
        PyErr_SetString(PyExc_OverflowError, "packet ids would pass 32 bits");
        goto end;
    }
    out = PyMem_Calloc(n ? (size_t)n : 1, sizeof(PyObject *));
    if (out == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    for (; done < n; done++) {
        Py_buffer pl;
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(seq, done), &pl, PyBUF_SIMPLE) < 0)
            goto end;
        if (pl.len > MAX_LEN) {
            PyBuffer_Release(&pl);
            PyErr_SetString(PyExc_OverflowError, "payload too long");
            goto end;
        }
        PyObject *w = PyBytes_FromStringAndSize(NULL, head_len + PID_LEN + TAG_LEN + pl.len);
        if (w == NULL) {
            PyBuffer_Release(&pl);
            goto end;
        }
        int bad = seal_to(self, (unsigned char *)PyBytes_AS_STRING(w), word, head_len, pid + (uint32_t)done,
                          pl.buf, (int)pl.len);
        PyBuffer_Release(&pl);
        if (bad) {
            Py_DECREF(w);
            openssl_error("seal");
            goto end;
        }
        out[done] = w;
    }
    res = PyList_New(n);
    if (res != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyList_SET_ITEM(res, i, out[i]);
            out[i] = NULL;
        }
    }
end:
    if (out != NULL) {
        for (Py_ssize_t i = 0; i < done && i < n; i++)
            Py_XDECREF(out[i]);
        PyMem_Free(out);
    }
    Py_DECREF(seq);
    return res;
}

PyDoc_STRVAR(seal_into_doc,
"seal_into(head_word, head_len, pid, payload, out) -> int\n\n"
"seal() written into the writable buffer `out` (at least head_len + 20 + len(payload) bytes);\n"
"returns the wire length. `payload` may sit exactly where the ciphertext goes in `out` (sealing\n"
"in place); any other overlap is refused.");

static PyObject *Key_seal_into(Key *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint32_t word, pid;
    int head_len;
    Py_buffer pl, out;
    if (check_nargs("seal_into", nargs, 5) < 0 || check_sealing(self) < 0
        || parse_head(args, &word, &head_len, &pid) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[3], &pl, PyBUF_SIMPLE) < 0)
        return NULL;
    if (PyObject_GetBuffer(args[4], &out, PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&pl);
        return NULL;
    }
    PyObject *res = NULL;
    Py_ssize_t total = head_len + PID_LEN + TAG_LEN + pl.len;
    if (pl.len > MAX_LEN) {
        PyErr_SetString(PyExc_OverflowError, "payload too long");
        goto done;
    }
    if (out.len < total) {
        PyErr_Format(PyExc_ValueError, "out holds %zd bytes, the packet needs %zd", out.len, total);
        goto done;
    }
    const char *p = pl.buf, *o = out.buf, *ct = o + head_len + PID_LEN + TAG_LEN;
    /* Overlap, compared as addresses (uintptr_t: no pointer arithmetic across objects). */
    uintptr_t pa = (uintptr_t)p, oa = (uintptr_t)o;
    int overlaps = pl.len > 0 && pa < oa + (uintptr_t)total && oa < pa + (uintptr_t)pl.len;
    if (overlaps && p != ct) {
        PyErr_SetString(PyExc_ValueError, "payload overlaps out other than at the ciphertext's place");
        goto done;
    }
    if (seal_to(self, out.buf, word, head_len, pid, pl.buf, (int)pl.len) < 0) {
        openssl_error("seal");
        goto done;
    }
    res = PyLong_FromSsize_t(total);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&pl);
    return res;
}

/* ---------------------------------------------------------------- open */

PyDoc_STRVAR(open_doc,
"open(packet, highest) -> bytes | None\n\n"
"Authenticate and decrypt one data packet (layout from its own opcode). Its packet id is left in\n"
"`last_pid`. When that id is not above `highest` (the replay window's newest; -1: always go on),\n"
"returns None without decrypting: the caller checks its window and calls again with -1.\n"
"Raises OpenError('short data packet') or OpenError('data packet failed authentication').");

static PyObject *Key_open(Key *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("open", nargs, 2) < 0)
        return NULL;
    if (self->sealing) {
        PyErr_SetString(PyExc_TypeError, "this Key seals; it does not open");
        return NULL;
    }
    long long highest = PyLong_AsLongLong(args[1]);
    if (highest == -1 && PyErr_Occurred())
        return NULL;
    Py_buffer pk;
    if (PyObject_GetBuffer(args[0], &pk, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *res = NULL;
    const unsigned char *p = pk.buf;
    Py_ssize_t n = pk.len;
    int head_len = (n >= 1 && p[0] >> 3 == OP_DATA_V2) ? V2_HEAD : V1_HEAD;
    Py_ssize_t ct_off = head_len + PID_LEN + TAG_LEN;
    if (n < ct_off) {
        PyErr_SetString(OpenError, "short data packet");
        goto done;
    }
    if (n > MAX_LEN) {
        PyErr_SetString(OpenError, "data packet too long");
        goto done;
    }
    uint32_t pid = get_be32(p + head_len);
    self->last_pid = pid;
    if ((long long)pid <= highest) {
        res = Py_NewRef(Py_None);
        goto done;
    }
    int ct_len = (int)(n - ct_off), len = 0, fin = 0;
    const unsigned char *aad = head_len == V2_HEAD ? p : p + V1_HEAD;
    int aad_len = head_len == V2_HEAD ? V2_HEAD + PID_LEN : PID_LEN;
    unsigned char nonce[NONCE_LEN], tag[TAG_LEN];
    memcpy(nonce, p + head_len, PID_LEN);
    memcpy(nonce + PID_LEN, self->iv, IMPLICIT_IV_LEN);
    memcpy(tag, p + head_len + PID_LEN, TAG_LEN);      /* SET_TAG takes a non-const pointer */
    res = PyBytes_FromStringAndSize(NULL, ct_len);
    if (res == NULL)
        goto wipe;
    unsigned char *pt = (unsigned char *)PyBytes_AS_STRING(res);
    if (EVP_DecryptInit_ex(self->ctx, NULL, NULL, NULL, nonce) != 1
        || EVP_CIPHER_CTX_ctrl(self->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, tag) != 1
        || EVP_DecryptUpdate(self->ctx, NULL, &len, aad, aad_len) != 1
        || (ct_len > 0 && EVP_DecryptUpdate(self->ctx, pt, &len, p + ct_off, ct_len) != 1)) {
        /* Not seen in practice; still the peer's packet must end as a refusal, not an exception
         * the session does not expect, and its partial plaintext goes like a forgery's. */
        OPENSSL_cleanse(pt, (size_t)ct_len);
        Py_CLEAR(res);
        ERR_clear_error();
        PyErr_SetString(OpenError, "data packet not opened (OpenSSL error)");
        goto wipe;
    }
    /* The tag is verified here, by OpenSSL, in constant time. */
    if (EVP_DecryptFinal_ex(self->ctx, pt + (ct_len ? len : 0), &fin) != 1 || (ct_len ? len : 0) + fin != ct_len) {
        OPENSSL_cleanse(pt, (size_t)ct_len);    /* unauthenticated plaintext never leaves */
        Py_CLEAR(res);
        ERR_clear_error();                      /* OpenSSL 3.0 queues none for a bad tag; 3.x might */
        PyErr_SetString(OpenError, "data packet failed authentication");
    }
wipe:
    OPENSSL_cleanse(nonce, sizeof nonce);
done:
    PyBuffer_Release(&pk);
    return res;
}

/* ---------------------------------------------------------------- type and module */

static PyMethodDef Key_methods[] = {
    {"seal", (PyCFunction)(void (*)(void))Key_seal, METH_FASTCALL, seal_doc},
    {"seal_into", (PyCFunction)(void (*)(void))Key_seal_into, METH_FASTCALL, seal_into_doc},
    {"seal_many", (PyCFunction)(void (*)(void))Key_seal_many, METH_FASTCALL, seal_many_doc},
    {"open", (PyCFunction)(void (*)(void))Key_open, METH_FASTCALL, open_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Key_members[] = {
    {"last_pid", T_UINT, offsetof(Key, last_pid), READONLY, "packet id of the last packet open() parsed"},
    {"sealing", T_INT, offsetof(Key, sealing), READONLY, "1: seals (sending direction); 0: opens"},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Key_doc,
"Key(cipher, key, implicit_iv, sealing)\n\n"
"One direction of one data-channel key: cipher one of AES-128/192/256-GCM, CHACHA20-POLY1305;\n"
"key exactly the cipher's key length; implicit_iv 8 bytes; sealing True for the sending side.");

static PyTypeObject KeyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.native._aead.Key",
    .tp_basicsize = sizeof(Key),
    .tp_dealloc = (destructor)Key_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Key_doc,
    .tp_methods = Key_methods,
    .tp_members = Key_members,
    .tp_new = Key_new,
};

static struct PyModuleDef aead_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appliance.native._aead",
    .m_doc = "AEAD seal/open of OpenVPN data packets over OpenSSL EVP (see aead.c's header).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__aead(void)
{
    if (PyType_Ready(&KeyType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&aead_module);
    if (m == NULL)
        return NULL;
    OpenError = PyErr_NewExceptionWithDoc("appliance.native._aead.OpenError",
                                          "A data packet that is short or fails authentication.",
                                          PyExc_ValueError, NULL);
    if (OpenError == NULL
        || PyModule_AddObjectRef(m, "OpenError", OpenError) < 0
        || PyModule_AddObjectRef(m, "Key", (PyObject *)&KeyType) < 0
        || PyModule_AddIntConstant(m, "MAX_LEN", (long)MAX_LEN) < 0
        || PyModule_AddIntConstant(m, "TAG_LEN", TAG_LEN) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
