"""The capath fuzz target: `capath DIR`'s verdicts at a handshake (tls.py _add_capath,
_capath_verdict, context_for) and at a reload's re-check of connected peers (peer_rechecker,
_capath_recheck), over a directory whose files the input lays out and then changes.

Why a target: fuzz36's tls-config reached capath only as a directive; its verdicts at a handshake
and the reload's re-check of the connected peers' chains were reached by no input. The two are
separate code (a verify callback inside OpenSSL's handshake; X509StoreContext checks one
certificate at a time): where they disagree, a reload keeps a client a new handshake refuses
(revoked by a CRL dropped into the directory, say), or drops one it would let in.

Input: a list of entries, each `kind name arg` (3 bytes) and, for junk, arg bytes after it; a
0xff byte ends the first layout, and what follows is applied to the same directory (files
replaced, removed, added: c_rehash run again while the server runs).
  kind % 16: 0 the root CA, 1 the sub CA, 2 another CA with the root's very subject (a hash
  collision: the same HASH, another key), 3 the sub CA's CRL revoking `bad`, 4 its empty CRL,
  5 its expired CRL, 6 a CRL in the sub CA's name signed by the root's key, 7 the root's CRL
  revoking the sub CA, 8 the root's empty CRL, 9 junk (arg bytes), 10 an empty file, 11 a PEM
  with the root CA and the sub's revoking CRL in one file, 12 the root CA in DER, 13 a symlink to
  the entry before, 14 a directory, 15 the entry removed.
  name % 16: ROOT.N / ROOT.rN / SUB.N / SUB.rN with N = arg % 3 (0-11), then odd names: x.pem,
  .hidden, ROOT.0.bak, ROOT in capitals .0.
Peers (a client whose chain is leaf + the sub CA, as a client's `cert` file carries it): `good`,
`bad` (its serial in the sub CA's revoking CRL), `stranger` (another CA's leaf, whose sub CA has
the same subject as ours).

Oracles, after the first layout and after the changes, for each peer:
- the handshake (a fresh context_for, as each new session has) and peer_rechecker (as a reload
  runs it) agree: both accept or both refuse -- unless a readable file is misfiled (under a
  HASH name its content does not match): OpenSSL then finds what its lookups happened to load
  first, in another order in the two (and as in 2.6: its OpenSSL); no c_rehash'ed directory is
  so (see _ambiguous);
- the stranger is never accepted;
- bad is never accepted while the sub CA's revoking CRL is its only CRL (at SUB.r0), or while
  the root's CRL revoking the sub CA is the root's only one (at ROOT.r0); nor is good in the latter;
- nothing escapes but the refusal (RemoteProtocolError), and no more than 64 missing-CRL warnings
  per context.
"""
from __future__ import annotations

import functools
import os
import shutil

from tests.fuzz.scratch import scratch_dir

END = 0xff


@functools.lru_cache(maxsize=1)
def _pki() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from OpenSSL import crypto

    from appliance.certs import issue

    def _cert(cn: str, issuer=None, eku=None):
        return issue(cn, issuer, eku)
    from appliance.openvpn.crl import make_crl
    pem = serialization.Encoding.PEM
    root = _cert("capath fuzz root")
    twin = _cert("capath fuzz root")                      # the same subject, another key
    sub = _sub_ca("capath fuzz sub", root)
    good = _cert("good client", sub, ExtendedKeyUsageOID.CLIENT_AUTH)
    bad = _cert("revoked client", sub, ExtendedKeyUsageOID.CLIENT_AUTH)
    other_root = _cert("other root")
    other_sub = _sub_ca("capath fuzz sub", other_root)     # our sub CA's name, not its key
    stranger = _cert("stranger", other_sub, ExtendedKeyUsageOID.CLIENT_AUTH)
    server = _cert("server", root, ExtendedKeyUsageOID.SERVER_AUTH)

    def h(c) -> str:
        return f"{crypto.X509.from_cryptography(c[0]).subject_name_hash():08x}"

    files = {
        0: root[0].public_bytes(pem), 1: sub[0].public_bytes(pem), 2: twin[0].public_bytes(pem),
        3: make_crl(sub[0], sub[1], [bad[0].serial_number]),
        4: make_crl(sub[0], sub[1], []),
        5: make_crl(sub[0], sub[1], [], days=-1),
        6: make_crl(sub[0], root[1], [], issuer=sub[0].subject),
        7: make_crl(root[0], root[1], [sub[0].serial_number]),
        8: make_crl(root[0], root[1], []),
        11: root[0].public_bytes(pem) + make_crl(sub[0], sub[1], [bad[0].serial_number]),
        12: root[0].public_bytes(serialization.Encoding.DER),
    }
    peers = {"good": (good, sub), "bad": (bad, sub), "stranger": (stranger, other_sub)}
    return {"files": files, "peers": peers, "server": _pems(server), "root_pem": root[0].public_bytes(pem),
            "root": h(root), "sub": h(sub), "pem": pem}


def _sub_ca(name: str, issuer):
    """An intermediate CA signed by `issuer` (cert, key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(issuer[1], hashes.SHA256()))
    return cert, key


def _pems(c) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    return (c[0].public_bytes(serialization.Encoding.PEM),
            c[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()))


def _ambiguous(pki: dict, layout: dict) -> bool:
    """A directory c_rehash could not have written: a readable file under a HASH.N / HASH.rN name
    its content does not match (another CA's hash, a CRL in a certificate's slot, a certificate
    and a CRL in one file). OpenSSL's lookups find what such a file holds only once some lookup
    has loaded it (a CA, a twin, a CRL), and a handshake (whose server looks its own chain up
    before it verifies the client, as 2.6's does; which checks the chain in its own order) and a
    reload's re-check (a fresh store, one certificate at a time) load in another order: a CA or
    CRL found by one and not yet by the other. The verdict oracles skip such a directory."""
    fits = {0: ("root", ""), 2: ("root", ""), 12: ("root", ""), 1: ("sub", ""),
            3: ("sub", "r"), 4: ("sub", "r"), 5: ("sub", "r"), 6: ("sub", "r"), 7: ("root", "r"), 8: ("root", "r")}
    misfiled = False
    for name, kind in layout.items():
        kind = kind[1] if isinstance(kind, tuple) else kind
        stem, _, suffix = name.partition(".")
        if stem not in (pki["root"], pki["sub"]) or not suffix[-1:].isdigit():
            continue                                   # not a name a lookup reads
        if kind in (9, 10, 14, None):
            continue                                   # unreadable there: no candidate
        want = fits.get(kind)
        if want is None or stem != pki[want[0]] or suffix.startswith("r") != (want[1] == "r"):
            misfiled = True
    return misfiled


def _name(pki: dict, n: int, arg: int) -> str:
    k = arg % 3
    return (f"{pki['root']}.{k}", f"{pki['root']}.r{k}", f"{pki['sub']}.{k}", f"{pki['sub']}.r{k}",
            f"{pki['root']}.{k}", f"{pki['root']}.r{k}", f"{pki['sub']}.{k}", f"{pki['sub']}.r{k}",
            f"{pki['root']}.0", f"{pki['sub']}.r0", f"{pki['sub']}.0",
            "x.pem", ".hidden", f"{pki['root']}.0.bak", f"{pki['root'].upper()}.0", f"{pki['sub']}.r0")[n % 16]


def _clear(p: str) -> None:
    if os.path.islink(p) or os.path.isfile(p):
        os.unlink(p)
    elif os.path.isdir(p):
        shutil.rmtree(p)


def _lay_out(pki: dict, d: str, data: bytes, layout: dict) -> None:
    """Apply entries to directory d; `layout` maps name -> kind of what is there now."""
    i, last = 0, None
    while i + 3 <= len(data):
        kind, n, arg = data[i] % 16, data[i + 1], data[i + 2]
        i += 3
        name = _name(pki, n, arg)
        p = os.path.join(d, name)
        _clear(p)
        layout.pop(name, None)
        if kind == 15:
            continue
        if kind == 9:
            body = data[i:i + arg % 64]
            i += arg % 64
            with open(p, "wb") as f:
                f.write(body)
        elif kind == 10:
            open(p, "wb").close()
        elif kind == 13:
            if last is None or last == name:
                continue
            os.symlink(last, p)
            kind = ("->", layout.get(last))
        elif kind == 14:
            os.mkdir(p)
        else:
            with open(p, "wb") as f:
                f.write(pki["files"][kind])
        layout[name] = kind
        last = name


def _only(layout: dict, name: str, kind: int, others: tuple[str, ...]) -> bool:
    """`name` holds kind (directly or by a symlink) and none of `others` is there."""
    k = layout.get(name)
    k = k[1] if isinstance(k, tuple) else k
    return k == kind and not any(o in layout for o in others)


def _handshake_pair(c, s) -> bool:
    """True when the server end `s` completed the handshake with `c`; False when it refused."""
    from appliance.openvpn.errors import RemoteProtocolError
    try:
        out_c, _ = c.pump()
        for _ in range(10):
            s.feed(out_c)
            out_s, _ = s.pump()
            c.feed(out_s)
            out_c, _ = c.pump()
            if c.handshake_done and s.handshake_done and not out_c:
                break
    except RemoteProtocolError:
        return False
    return s.handshake_done


def make_capath():
    from appliance.openvpn.errors import RemoteProtocolError
    from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context, context_for, peer_rechecker

    pki = _pki()
    d = scratch_dir("fuzz-capath-")
    cap = os.path.join(d, "ca")
    warned: list[str] = []
    clients = {}
    for who, (leaf, sub) in pki["peers"].items():
        cert, key = _pems(leaf)
        s = TlsSettings(pki["root_pem"], cert + sub[0].public_bytes(pki["pem"]), key, False)
        clients[who] = (build_context(s), s, leaf[0], sub[0])

    def handshake(who: str) -> bool:
        ctx_c, s_c, _leaf, _sub = clients[who]
        s = TlsSettings(None, *pki["server"], True, capath=cap, capath_warn=warned.append)
        ctx = context_for(s)
        return _handshake_pair(TlsEndpoint(ctx_c, s_c), TlsEndpoint(ctx, s))

    def recheck(who: str) -> bool:
        _c, _s, leaf, sub = clients[who]
        s = TlsSettings(None, *pki["server"], True, capath=cap)
        try:
            peer_rechecker(s)(leaf, lambda: [sub])
        except RemoteProtocolError:
            return False
        return True

    def judge(layout: dict) -> None:
        root_r = tuple(f"{pki['root']}.r{k}" for k in (1, 2))
        sub_r = tuple(f"{pki['sub']}.r{k}" for k in (1, 2))
        sub_revokes = _only(layout, f"{pki['sub']}.r0", 3, sub_r)
        root_revokes = _only(layout, f"{pki['root']}.r0", 7, root_r)
        ambiguous = _ambiguous(pki, layout)
        for who in ("good", "bad", "stranger"):
            warned.clear()
            h, r = handshake(who), recheck(who)
            if who == "stranger":
                assert not h and not r, "a stranger's chain accepted"
            if ambiguous:
                continue
            assert h == r, f"{who}: the handshake {'accepts' if h else 'refuses'}, a reload's re-check " \
                           f"{'accepts' if r else 'refuses'} (directory {sorted(layout.items(), key=str)})"
            assert len(warned) <= 64, f"{len(warned)} missing-CRL warnings"
            if who == "bad" and sub_revokes:
                assert not h, "accepted with the sub CA's CRL revoking it"
            if root_revokes and who != "stranger":
                assert not h, f"{who} accepted with the root's CRL revoking its sub CA"

    def one(data: bytes) -> None:
        if os.path.lexists(cap):
            shutil.rmtree(cap)
        os.mkdir(cap)
        first, _, then = data[:600].partition(bytes((END,)))
        layout: dict = {}
        _lay_out(pki, cap, first, layout)
        judge(layout)
        if then:
            _lay_out(pki, cap, then, layout)
            judge(layout)
    return one


def seeds() -> list[bytes]:
    def e(kind: int, name: int, arg: int = 0, body: bytes = b"") -> bytes:
        return bytes((kind, name, arg)) + body
    canonical = e(0, 0) + e(1, 2) + e(3, 3)
    return [
        canonical,
        e(0, 0) + e(4, 3),
        e(0, 0) + e(5, 3),                                  # expired CRL: refused
        e(0, 0) + e(6, 3),                                  # foreign-signed CRL
        e(0, 0) + e(7, 1) + e(3, 3),                        # the root revokes the sub CA
        e(0, 0) + e(8, 1),
        e(2, 0) + e(0, 0, 1) + e(3, 3),                     # the twin at ROOT.0, the root at ROOT.1
        e(0, 0) + e(3, 3) + bytes((END,)) + e(15, 3) + e(4, 3),     # the CRL replaced
        e(0, 0) + bytes((END,)) + e(3, 3),                  # a CRL added while running
        e(0, 0) + e(9, 3, 20) + b"-----BEGIN X509 CRL-----",
        e(0, 0) + e(10, 3) + e(3, 3, 1),                    # SUB.r0 empty, SUB.r1 revoking
        e(11, 0) + e(12, 0, 1),
        e(0, 11) + e(0, 12) + e(0, 13) + e(0, 14) + e(3, 15),
        e(0, 0) + e(13, 0, 1) + e(14, 3),
        e(0, 0) + e(3, 3) + e(4, 3, 1) + e(5, 3, 2),
    ]
