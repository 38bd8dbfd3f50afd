"""fuzz40: a hostile `dh` file (openvpn/dhparams.py, and `dh` in a server config), and the
multicast replication budget with the multicast test (openvpn/datapath.py).

`dh-file`: the first byte chooses how the rest is served: as the file's bytes; as DER wrapped in
a "DH PARAMETERS" or "X9.42 DH PARAMETERS" PEM block (with garbage, a second block, an EC
PARAMETERS block or PEM headers around it); or a real 2048-bit group (and a 1024-bit one) with
the input's bytes put over part of its DER. Oracles, against OpenSSL's own loader as 2.6 calls it
(PEM_read_bio_Parameters from libcrypto.so.3, through ctypes): modulus_bits returns or raises
ValueError, nothing else; a file it takes as a group of MIN_BITS or more and MIN_STRENGTH bits of
security OpenSSL loads and finds that strong (else 2.6 fails at start: "Cannot load DH parameters",
"dh key too small" -- a config 2.6 refuses must not start here); when
the file's first PARAMETERS block is a DH, DSA or EC one and OpenSSL loads it, the kind, bits and
strength agree, and what OpenSSL takes at level 2 is taken here but an EC curve not known by name; in a server config (`dh FILE` and an inline <dh> block) parse_config
refuses exactly what read refuses or finds below MIN_BITS or MIN_STRENGTH, at the dh line.

`mcast-budget`: ReplicationBudget.allow / forget over a script of up to 6 clients (3 common
names, one without), packets with 0..70,000 copies, time steps (back in time too: the pump's
clock is monotonic, the budget must still never go negative), clients leaving and their name
coming back. Oracles: both buckets within 0..their burst; a False counted once: under
BCAST_OVER_RATE exactly when the sender's own bucket had too little, else under BCAST_OVER_SERVER
(mcast40's server-wide budget, merged after fuzz40); the server's bucket within 0..its burst and
the copies allowed for all senders together at most BCAST_SERVER_BURST + BCAST_SERVER_RATE x the
time since the first (a clock step back and forth buys nothing); over any stretch of one name's sessions (one at a
time) the packets allowed are at most BCAST_BURST + BCAST_RATE x its length and the copies
charged at most BCAST_COPY_BURST + BCAST_COPY_RATE x its length (reconnecting buys nothing);
the names kept for a next session at most BCAST_LEFT_MAX. is_multicast on the input's bytes
as packets agrees with ipaddress (224.0.0.0/4 or ff00::/8, the header whole).
"""
from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"


def _der_int(n: int) -> bytes:
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return b"\x02" + _der_len(len(body)) + body


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


@functools.lru_cache(maxsize=1)
def _groups() -> tuple[bytes, bytes]:
    """A 2048-bit and a 1024-bit group (RFC 3526 group 14 / RFC 2409 group 2: well-known primes,
    no generation), as PKCS#3 DER (SEQUENCE { p, g }), written here: cryptography's encoder puts
    q where PKCS#3 has privateValueLength for a named group, which OpenSSL's decoder refuses."""
    p14 = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
              "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
              "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
              "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
              "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
              "15728E5A8AACAA68FFFFFFFFFFFFFFFF", 16)
    p2 = int("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF"
             "9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7EDEE"
             "386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)
    out = []
    for p in (p14, p2):
        body = _der_int(p) + _der_int(2)
        out.append(b"\x30" + _der_len(len(body)) + body)
    return out[0], out[1]


def _pem(label: bytes, der: bytes, headers: bytes = b"") -> bytes:
    b64 = base64.b64encode(der)
    body = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN " + label + b"-----\n" + headers + body + b"\n-----END " + label + b"-----\n"


_EC = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"


def _file(data: bytes) -> bytes:
    if not data:
        return b""
    mode, rest = data[0], data[1:]
    kind = mode & 7
    if kind == 0:
        return rest
    label = b"X9.42 DH PARAMETERS" if mode & 8 else b"DH PARAMETERS"
    if kind in (1, 2):
        der = rest
    else:
        big, small = _groups()
        der = bytearray(big if kind != 3 else small)
        if rest:
            at = int.from_bytes(rest[:2], "big") % (len(der) + 1)
            patch = rest[2:]
            if mode & 0x80:                       # cut, then the patch appended
                der = der[:at] + patch
            else:
                der[at:at + len(patch)] = patch
        der = bytes(der)
    headers = b"Proc-Type: 4,ENCRYPTED\n\n" if mode & 0x10 else b""
    block = _pem(label, der, headers)
    if kind == 2:
        return b"garbage " + block + _pem(b"DH PARAMETERS", _groups()[0])
    if mode & 0x20:
        block = _EC + block
    if mode & 0x40:
        block = block + _pem(label, _groups()[1])
    return block


class _Libcrypto:
    """OpenSSL's own loader, as OpenVPN 2.6 calls it with OpenSSL 3 (ssl_openssl.c
    tls_ctx_load_dh_params: PEM_read_bio_Parameters, any "... PARAMETERS" block) -- Debian's
    openvpn links this libcrypto. (cryptography's loader checks that p is prime, which 2.6's
    does not: not the same oracle.)"""

    def __init__(self) -> None:
        import ctypes
        lib = ctypes.CDLL("libcrypto.so.3")
        lib.BIO_new_mem_buf.restype = ctypes.c_void_p
        lib.BIO_new_mem_buf.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.PEM_read_bio_Parameters.restype = ctypes.c_void_p
        lib.PEM_read_bio_Parameters.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        for f in (lib.EVP_PKEY_get_bits, lib.EVP_PKEY_get_base_id, lib.EVP_PKEY_get_security_bits, lib.EVP_PKEY_free,
                  lib.BIO_free):
            f.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def load(self, data: bytes) -> tuple[int, int, int] | None:
        """(EVP_PKEY type, bits, security bits) of the parameters OpenSSL reads from `data`, or
        None. The security bits are what 2.6's SSL_CTX_set0_tmp_dh_pkey holds against level 2."""
        lib = self.lib
        bio = lib.BIO_new_mem_buf(data, len(data))
        try:
            pk = lib.PEM_read_bio_Parameters(bio, None)
            lib.ERR_clear_error()
            if not pk:
                return None
            try:
                return lib.EVP_PKEY_get_base_id(pk), lib.EVP_PKEY_get_bits(pk), lib.EVP_PKEY_get_security_bits(pk)
            finally:
                lib.EVP_PKEY_free(pk)
        finally:
            lib.BIO_free(bio)


EVP_PKEY_DH, EVP_PKEY_DHX, EVP_PKEY_DSA, EVP_PKEY_EC = 28, 920, 116, 408
_KIND = {EVP_PKEY_DH: "DH", EVP_PKEY_DHX: "DH", EVP_PKEY_DSA: "DSA", EVP_PKEY_EC: "EC"}
_KINDS_BY_LABEL = (b"DH PARAMETERS", b"X9.42 DH PARAMETERS", b"DSA PARAMETERS", b"EC PARAMETERS")


# The first block OpenSSL's PEM reader would look at (a BEGIN line of its own).
_FIRST = re.compile(rb"(?m)^-----BEGIN ([^\n]*PARAMETERS)-----$")


def make_dh_file():
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.dhparams import MIN_BITS, MIN_STRENGTH, read
    from appliance.openvpn.errors import ConfigError

    from .harness import pki
    p = pki()
    tmp = scratch_dir("fuzz40-dh-")
    ossl = _Libcrypto()
    path = os.path.join(tmp, "dh.pem")
    head = ("mode server\ntls-server\ndev tun\ntopology subnet\nifconfig 198.19.0.1 255.255.255.0\n"
            "<ca>\n" + p["ca"].decode() + "</ca>\n<cert>\n" + p["server"][0].decode() + "</cert>\n<key>\n"
            + p["server"][1].decode() + "</key>\n")

    def one(data: bytes) -> None:
        raw = _file(data)
        try:
            params = read(raw)
            bits = params.bits
        except ValueError:
            params = bits = None
        got = ossl.load(raw)
        ok = params is not None and params.strength >= MIN_STRENGTH and (params.kind != "DH" or bits >= MIN_BITS)
        if ok:
            assert got is not None, f"taken as a {bits}-bit group, OpenSSL (2.6) cannot load the file"
            assert got[2] >= MIN_STRENGTH, f"taken, 2.6 says \"dh key too small\" ({got[2]} bits of security)"
        first = _FIRST.search(raw)
        if got is not None and first is not None and first.group(1) in _KINDS_BY_LABEL:
            if params is not None:
                # compat41: DSA and EC parameters first are what 2.6 takes in place of DH ones
                assert (params.kind, bits) == (_KIND[got[0]], got[1]), f"we read {params}, OpenSSL {got}"
                # review41: the strength 2.6's start checks against level 2 (below it, a group
                # under 2048 bits may differ: OpenSSL knows modp_1536 and dh_1024_160 by name)
                assert (params.strength >= MIN_STRENGTH) == (got[2] >= MIN_STRENGTH), \
                    f"we give {params.strength} bits of security, OpenSSL {got[2]}"
            elif got[2] >= MIN_STRENGTH and (_KIND[got[0]] != "DH" or got[1] >= MIN_BITS):
                # 2.6 starts with this file: so must we, but for an EC curve given by its numbers
                # or not known to `cryptography` by name (refused, stricter; compat41: BER's
                # indefinite lengths, refused before, are read now).
                assert got[0] == EVP_PKEY_EC, "OpenSSL (2.6) takes this group, we refuse it"
        if data[:1] and data[0] & 0x80 and data[0] & 7 == 0:
            return
        with open(path, "wb") as f:
            f.write(raw)
        texts = [head + f"dh {path}\n"]
        try:
            inline = raw.decode("ascii")
        except UnicodeDecodeError:
            inline = None
        if inline is not None and "</dh>" not in inline and all(ln.strip() for ln in inline.splitlines()) \
                and "\r" not in inline and all(32 <= ord(c) < 127 or c == "\n" for c in inline):
            texts.append(head + "<dh>\n" + inline + ("" if inline.endswith("\n") else "\n") + "</dh>\n")
        for text in texts:
            try:
                parse_config(text, "fuzz.conf")
                accepted = True
            except ConfigError as e:
                accepted = False
                msg = str(e)
                if ok:
                    raise AssertionError(f"good dh refused: {msg}") from None
                assert "dh" in msg, f"refused without naming dh: {msg}"
            assert accepted == ok, f"config accepted={accepted}, the file's group {bits} bits"
    return one


class _Rec:
    def __init__(self, cn: str) -> None:
        self.common_name = cn


def make_mcast_budget():
    from appliance.openvpn import datapath as dp

    names = ("alice", "bob", "")

    def one(data: bytes) -> None:
        stats: dict[str, int] = {}
        b = dp.ReplicationBudget(stats)
        keep: list[_Rec] = []               # every record stays alive: no id() reused
        live: dict[int, _Rec] = {}
        # one name's sessions, one at a time: [first time, packets allowed, copies charged]
        chain: dict[str, list[float]] = {}
        now = t_max = 0.0
        t_first: float | None = None       # the first allow()
        server_copies = 0.0                 # copies allowed, all senders together
        i = 0
        while i + 1 < len(data):
            op, arg = data[i], data[i + 1]
            i += 2
            kind = op & 3
            slot = (op >> 2) % 6
            if kind == 0:
                now += arg * (0.0005 if op & 0x80 else 0.05)
                t_max = max(t_max, now)
            elif kind == 1 and op & 0x80:
                now -= arg * 0.01                       # a clock step back
            elif kind == 2 and slot in live:            # a client leaves (forget at every end)
                b.forget(live.pop(slot))
                assert len(b.left) <= dp.BCAST_LEFT_MAX
            else:
                rec = live.get(slot)
                if rec is None:
                    cn = names[slot % 3]
                    if cn and any(r.common_name == cn for r in live.values()):
                        continue                        # one session of a name at a time
                    rec = live[slot] = _Rec(cn)
                    keep.append(rec)
                    if cn and cn not in chain:
                        chain[cn] = [now, 0.0, 0.0]
                copies = (arg * 300 if op & 0x40 else arg % 8) if kind != 1 else 70_000
                over = stats.get(dp.BCAST_OVER_RATE, 0)
                over_server = stats.get(dp.BCAST_OVER_SERVER, 0)
                before = list(b.buckets.get(id(rec)) or [])
                if not before and rec.common_name in b.left:
                    before = list(b.left[rec.common_name])      # handed to the name's next session
                t_first = now if t_first is None else t_first
                ok = b.allow(rec, now, copies)
                cost = min(float(max(copies, 0)), dp.BCAST_COPY_BURST)
                # The sender's own buckets, refilled as the docstring says (nothing for an older time).
                if before:
                    dt = max(0.0, now - before[2])
                    pk = min(dp.BCAST_BURST, before[0] + dt * dp.BCAST_RATE)
                    cp = min(dp.BCAST_COPY_BURST, before[1] + dt * dp.BCAST_COPY_RATE)
                else:
                    pk, cp = dp.BCAST_BURST, dp.BCAST_COPY_BURST
                own_short = pk < 1.0 or cp < cost
                # Refused exactly once: under the sender's rate when its own bucket had too little
                # (mcast40), else under the server's; never refused by the server and allowed.
                assert stats[dp.BCAST_OVER_RATE] == over + int(not ok and own_short), "over-rate count"
                assert stats[dp.BCAST_OVER_SERVER] == over_server + int(not ok and not own_short), \
                    "over-server count"
                assert not (ok and own_short), "allowed past the sender's own bucket"
                bucket = b.buckets[id(rec)]
                assert 0.0 <= bucket[0] <= dp.BCAST_BURST, f"packet tokens {bucket[0]}"
                assert 0.0 <= bucket[1] <= dp.BCAST_COPY_BURST, f"copy tokens {bucket[1]}"
                assert 0.0 <= b.server[0] <= dp.BCAST_SERVER_BURST, f"server tokens {b.server[0]}"
                if ok:
                    # The server's budget for all senders together (mcast40): a clock step back
                    # and forth buys nothing either.
                    server_copies += cost
                    assert server_copies <= dp.BCAST_SERVER_BURST + dp.BCAST_SERVER_RATE * (t_max - t_first) + 1e-3, \
                        f"{server_copies} copies server-wide in {t_max - t_first:.3f} s"
                if ok and rec.common_name:
                    c = chain[rec.common_name]
                    c[1] += 1
                    c[2] += cost
                    span = max(0.0, t_max - c[0])
                    assert c[1] <= dp.BCAST_BURST + dp.BCAST_RATE * span + 1e-6, \
                        f"{rec.common_name}: {c[1]} packets in {span:.3f} s"
                    assert c[2] <= dp.BCAST_COPY_BURST + dp.BCAST_COPY_RATE * span + 1e-3, \
                        f"{rec.common_name}: {c[2]} copies in {span:.3f} s"
                del before
        # is_multicast against ipaddress, the input as packets
        for k in range(0, min(len(data), 512), 37):
            p = data[k:k + 60]
            want = False
            if len(p) >= 20 and p[0] >> 4 == 4:
                want = ipaddress.IPv4Address(p[16:20]).is_multicast
            elif len(p) >= 40 and p[0] >> 4 == 6:
                want = ipaddress.IPv6Address(p[24:40]).is_multicast
            assert dp.is_multicast(p) == want, f"is_multicast({p.hex()})"
            assert dp.is_multicast(memoryview(p)) == want
    return one


def seeds_dh_file() -> list[bytes]:
    big, small = _groups()
    return [
        bytes((3,)),                                  # the 2048-bit group
        bytes((4,)),                                  # the 1024-bit group (refused: too small)
        bytes((3 | 8,)),                              # X9.42 label around PKCS#3 DER
        bytes((3 | 0x20,)),                           # an EC PARAMETERS block first
        bytes((3 | 0x10,)),                           # PEM headers
        bytes((3 | 0x40,)),                           # a second block
        bytes((3,)) + (5).to_bytes(2, "big") + b"\x00",         # the prime's first byte
        bytes((3 | 0x80,)) + (len(big) - 3).to_bytes(2, "big"),  # g cut off
        bytes((3 | 0x80,)) + (len(big)).to_bytes(2, "big") + b"\x02\x01\x05",   # trailing INTEGER
        bytes((3,)) + (1).to_bytes(2, "big") + b"\x84\x00\x00\x01\x08",          # a long-form length
        bytes((1,)) + b"\x30\x06\x02\x01\x17\x02\x01\x02",
        bytes((1,)) + b"\x30\x84\xff\xff\xff\xff\x02\x01\x17",
        bytes((2,)) + b"\x30\x03\x02\x01\x05",
        bytes((0,)) + b"-----BEGIN DH PARAMETERS-----\n" * 50,
        bytes((0,)) + _pem(b"DH PARAMETERS", big).replace(b"\n-----END", b"-----END"),
        bytes((0,)) + _EC,
        bytes((5,)),
    ]


def seeds_mcast_budget() -> list[bytes]:
    burst = bytes((3 | 0 << 2, 5)) * 200 + bytes((0, 10)) + bytes((3, 5)) * 50
    reconnect = bytes((3, 5)) * 100 + bytes((2, 0)) + bytes((3, 5)) * 300 + bytes((2, 0)) + bytes((3, 5)) * 100
    copies = bytes((3 | 0x40, 255)) * 5 + bytes((1, 0)) * 3 + bytes((0 | 0x80, 200)) + bytes((3 | 0x40, 100)) * 5
    back = bytes((3, 1)) * 10 + bytes((1 | 0x80, 250)) + bytes((3, 1)) * 10 + bytes((0, 255)) + bytes((3, 1))
    mix = bytes((3 | 1 << 2, 7, 3 | 2 << 2, 7, 3 | 3 << 2, 7, 2 | 3 << 2, 0, 3 | 4 << 2, 7, 2 | 1 << 2, 0, 3 | 1 << 2, 7))
    v4 = bytes((0x45, 0, 0, 28)) + bytes(12) + bytes((224, 0, 0, 5)) + bytes(8)
    v6 = bytes((0x60,)) + bytes(23) + bytes((0xFF, 2)) + bytes(14) + bytes(8)
    # four senders empty the server's budget at once, a clock 2 s back (one packet) and forth:
    # the server's budget must not refill those seconds twice (fuzz40b)
    flood = bytes(b for slot in (0, 1, 2, 5) for b in (3 | slot << 2 | 0x40, 34))
    rewind = flood + bytes((1 | 0x80, 200, 3 | 2 << 2, 1, 0, 40)) + flood
    return [burst, reconnect, copies, back, mix, v4 + v6, v6 * 3 + v4[:19], rewind]
