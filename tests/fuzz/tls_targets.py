"""The TLS glue as a hostile peer drives it (appliance/openvpn/tls.py, and control.py's use of it).

`tls-endpoint`: one of our TlsEndpoints (client or server: the victim) against an honest
endpoint whose records a script forwards, cuts, corrupts, or replaces, with raw bytes fed
between them, application messages either way, the tls-verify verdict, and the peer asking for
a renegotiation (TLS 1.2) at any time. A fresh pair per input.

First byte: bit 0 the victim is the server (else the client), bit 1 TLS 1.2 at most (else 1.3),
bit 2 tls-verify (the victim holds the handshake for a verdict), bits 4-7 the victim's checks of
the peer's certificate (`_checks`: verify-x509-name in its three forms, remote-cert-eku/-ku,
ns-cert-type, x509-username-field, verify-hash, peer-fingerprint without a CA, tls-cipher and
tls-groups; some the peer passes, some it must fail), bit 3 the peer's certificate another than
its plain one: with subject fields a CA signs when asked (a second CN, a control byte, commas),
the other role's (wrong extendedKeyUsage), or none. Then steps: an op byte (low 3 bits: what; the
rest an argument) and, for ops with data, a length byte and the data:

  0 forward all of the peer's pending records     4 the peer sends a message (data)
  1 forward the first `len` bytes of them         5 the victim sends a message (data)
  2 feed raw bytes (data), `room` = op >> 3       6 the tls-verify verdict (op bit 3: yes)
  3 xor data[0] into the pending records at       7 the peer asks for a renegotiation (TLS 1.2;
    data[1:3] (a corrupted real record)             op bit 3: the victim too, which refuses it)

After each step the victim pumps and what it writes goes to the peer, which pumps in turn.
Contract: feed/pump/send_message raise nothing but RemoteProtocolError (VerifyRefused included);
after one the endpoint is dead and the script ends. Oracles: the victim completes a handshake
only with the peer's real certificate, named as peer_name reads it, and only when its checks
pass that certificate (the fuzzer holds no key); while held for
tls-verify it names nobody and reads nothing; the messages it reads are exactly the peer's
sent ones, in order, none invented or altered (a prefix of them); its output stays bounded.

`tls-session`: two Sessions with tls-auth; one of them (bit 0 of the first byte: the client,
else the server) is hostile: every TLS chunk it queues for its control channel goes through the
script -- passed, replaced by fuzzed bytes, cut, corrupted, extended, dropped, or followed by a
renegotiation of either side at that moment --, wrapped and authenticated with the right tls-auth
key, so the victim's TLS sees it. Time passes with the timers. Session.receive must never
raise; the victim comes up only with the hostile side's real certificate (its common name).
"""
from __future__ import annotations

import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL._util import lib as _lib

from appliance.certs import issue
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context, peer_name

from . import harness as h

OUTPUT_MAX = 1 << 20          # what the victim may write in one input (a handshake is ~4 KB)


def _pem(c) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _kpem(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@functools.lru_cache(maxsize=1)
def _pki() -> dict:
    """A CA and, per role, the certificates a peer may hold: the plain one, one whose subject
    carries what a CA signs when asked (a second CN, a control byte, an e-mail address and
    subjectAltName e-mails), and one for the other role (wrong extendedKeyUsage)."""
    ca = issue("tls fuzz CA", None, None)
    out = {"ca": _pem(ca[0]), "ca_cert": ca[0]}
    for role, eku, other in (("server", ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
                             ("client", ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)):
        odd = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "decoy"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "O, with=commas/"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, f"{role}@example.org"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{role}\x01 two")])
        certs = {"plain": issue(role, ca, eku), "odd": issue(role, ca, eku, name=odd,
                                                            san_emails=(f"{role}@san.example",)),
                 "wrong": issue(role, ca, other)}
        out[role] = {k: (c, _pem(c), _kpem(key)) for k, (c, key) in certs.items()}
    return out


# Which of _checks each certificate of the peer passes (as 2.6 reads them: the last CN names the
# peer, "server\x01 two" is read "server_ two"; name-prefix "ser" takes it, name "server" not).
PASSES = {"plain": {0, 1, 2, 3, 4, 5, 6, 8, 10, 14}, "odd": {0, 2, 4, 5, 6, 7, 8, 14, 15}, "wrong": set(), "none": set()}


# The victim's checks (bits 4-7 of the first byte): TlsSettings fields, and whether the peer's
# plain certificate passes them (PASSES says it for every certificate). `who`: the peer's role.
def _checks(v: int, who: str, pki: dict) -> tuple[dict, bool]:
    ca_sha1 = pki["ca_cert"].fingerprint(hashes.SHA1())          # noqa: S303 - verify-hash's default
    plain_fp = hashlib.sha256(pki[who]["plain"][0].public_bytes(serialization.Encoding.DER)).digest()
    eku = "TLS Web Server Authentication" if who == "server" else "TLS Web Client Authentication"
    return [({}, True),
            ({"verify_x509_name": (who, "name")}, True),
            ({"verify_x509_name": (who[:3], "name-prefix")}, True),
            ({"verify_x509_name": (f"CN={who}", "subject")}, True),
            ({"remote_cert_eku": eku}, True),
            ({"remote_cert_ku": [0x80, 0xa0]}, True),
            ({"remote_cert_tls": None, "ns_cert_type": who}, True),
            ({"username_field": ("ext:subjectAltName",)}, False),      # the plain one has no SAN e-mail
            ({"verify_hash": [ca_sha1]}, True),
            ({"verify_hash": [bytes(20)]}, False),
            ({"peer_fingerprints": [plain_fp], "ca": None}, True),
            ({"peer_fingerprints": [bytes(32)], "ca": None}, False),
            ({"verify_x509_name": ("nobody", "name")}, False),
            ({"remote_cert_eku": "Code Signing"}, False),
            ({"tls_cipher": "ECDHE-ECDSA-AES128-GCM-SHA256", "tls_groups": "X25519:P-256"}, True),
            ({"username_field": ("emailAddress",)}, False)][v]


@functools.lru_cache(maxsize=None)
def _ctx(server: bool, tls12: bool, hold: bool, ident: str, checks: int):
    """The context of one end: the victim (`checks` one of _checks) or the honest peer
    (`ident` its certificate: plain, odd, wrong, none; checks -1: the usual ones)."""
    pki = _pki()
    role = "server" if server else "client"
    own = pki[role][ident] if ident != "none" else (None, None, None)
    extra = _checks(checks, "client" if server else "server", pki)[0] if checks >= 0 else {}
    fields = dict(ca=pki["ca"], cert=own[1], key=own[2], is_server=server,
                  remote_cert_tls="client" if server else "server",
                  tls_version_max="1.2" if tls12 else None, hold_for_verdict=hold)
    fields.update(extra)
    s = TlsSettings(**fields)
    return build_context(s), s


def _endpoint(server: bool, tls12: bool, hold: bool = False, ident: str = "plain", checks: int = -1) -> TlsEndpoint:
    ctx, s = _ctx(server, tls12, hold, ident, checks)
    return TlsEndpoint(ctx, s)


class _Dead(Exception):
    """The victim raised its documented error: the script ends."""


def make_tls_endpoint():
    def one(data: bytes) -> None:
        if not data:
            return
        sel = data[0]
        server, tls12, hold, odd = bool(sel & 1), bool(sel & 2), bool(sel & 4), bool(sel & 8)
        checks = sel >> 4
        who = "client" if server else "server"
        # bit 3: the peer's odd certificate (checks 0-7), the wrong role's (8-11), none (12-15;
        # a client only: a server always has one)
        ident = "plain" if not odd else ("odd" if checks < 8 else "wrong" if checks < 12 or not server else "none")
        victim = _endpoint(server, tls12, hold, checks=checks)
        peer = _endpoint(not server, tls12, ident=ident)
        pki = _pki()
        real = pki[who][ident][0] if ident != "none" else None
        may_pass = checks in PASSES[ident]
        pending = bytearray()          # the peer's records not yet given to the victim
        sent: list[bytes] = []         # the peer's application messages, in order
        got: list[bytes] = []
        out_total = [0]
        peer_ok = [True]

        def peer_step(fed: bytes = b"") -> None:
            if not peer_ok[0]:
                return
            try:
                if fed:
                    peer.feed(fed)
                out, _ = peer.pump()
                pending.extend(out)
            except RemoteProtocolError:
                peer_ok[0] = False

        def victim_call(fn, *a):
            try:
                return fn(*a)
            except RemoteProtocolError:
                raise _Dead from None

        def victim_step() -> None:
            out, msgs = victim_call(victim.pump)
            if msgs and not victim.handshake_done:
                raise AssertionError("application data read before the handshake was done")
            got.extend(msgs)
            if got != sent[:len(got)]:
                raise AssertionError(f"read {got[-3:]!r}, the peer sent {sent[:len(got)][-3:]!r}")
            if victim.verify_chain is not None and (victim.peer_cert is not None or msgs):
                raise AssertionError("held for tls-verify, and the peer named or read")
            if victim.handshake_done:
                if not may_pass:
                    raise AssertionError(f"handshake done with a peer its checks refuse ({ident}, checks {checks})")
                if victim.peer_cert != real or victim.peer_cn != peer_name(victim.settings, real):
                    raise AssertionError(f"handshake done with peer {victim.peer_cn!r}")
            out_total[0] += len(out)
            if out_total[0] > OUTPUT_MAX:
                raise AssertionError(f"the victim wrote {out_total[0]} bytes")
            if out:
                peer_step(out)

        if not server:
            if not victim.prime():
                raise AssertionError("the client did not start")
            victim_step()
        else:
            peer.prime()
            peer_step()
        rest = memoryview(data)[1:]
        i = 0
        try:
            while i < len(rest):
                op = rest[i]
                i += 1
                what, arg = op & 7, op >> 3
                chunk = b""
                if what in (2, 3, 4, 5):
                    n = rest[i] if i < len(rest) else 0
                    chunk = bytes(rest[i + 1:i + 1 + n])
                    i += 1 + n
                if what == 0:
                    take, pending[:] = bytes(pending), b""
                    victim_call(victim.feed, take)
                elif what == 1:
                    n = arg * 37 + 1
                    take, pending[:] = bytes(pending[:n]), pending[n:]
                    victim_call(victim.feed, take)
                elif what == 2:
                    if victim_call(victim.feed, chunk, arg) > arg:
                        return                       # past the budget: the session would end
                elif what == 3:
                    if len(chunk) >= 3 and pending:
                        pending[int.from_bytes(chunk[1:3], "big") % len(pending)] ^= chunk[0] or 1
                elif what == 4:
                    if peer_ok[0] and peer.handshake_done and chunk:
                        try:
                            pending.extend(peer.send_message(chunk))
                            sent.append(chunk)
                        except RemoteProtocolError:
                            peer_ok[0] = False
                elif what == 5:
                    if victim.handshake_done and chunk:
                        out = victim_call(victim.send_message, chunk)
                        peer_step(out)
                elif what == 6:
                    victim.give_verdict(bool(arg & 1), tell=bool(arg & 2))
                elif what == 7:
                    # TLS 1.2 only: the bindings have no SSL_key_update (a 1.3 KeyUpdate), and
                    # cryptography's OpenSSL is its own, so no other library's can be called on it.
                    for e in [peer] + ([victim] if arg & 1 else []):
                        _lib.SSL_renegotiate(e._ssl)              # noqa: SLF001
                        _lib.ERR_clear_error()
                    peer_step()
                victim_step()
        except _Dead:
            if victim.handshake_done and victim.peer_cert != real:
                raise AssertionError(f"died with a peer named {victim.peer_cn!r}") from None
    return one


def seeds_tls_endpoint() -> list[bytes]:
    """The plain handshakes (forward, forward in 37-byte cuts), with messages both ways, a verdict,
    renegotiations, corruption, and a raw record."""
    fwd = b"\x00" * 8
    msgs = b"\x04\x05hello\x05\x03abc\x04\x03xyz\x00\x00"
    out = []
    for sel in range(16):
        out.append(bytes((sel,)) + fwd + msgs)
    for sel in (0, 1, 2, 3):
        out.append(bytes((sel,)) + bytes((1 | 8,)) * 40 + msgs)                  # cut into 37-byte pieces
        out.append(bytes((sel | 4,)) + fwd + b"\x0e" + fwd + msgs)               # tls-verify: yes
        out.append(bytes((sel | 4,)) + fwd + b"\x16" + fwd)                      # tls-verify: no, told
        out.append(bytes((sel,)) + fwd + msgs + b"\x07" + fwd + b"\x0f" + fwd + msgs)   # renegotiation / key update
        out.append(bytes((sel,)) + fwd[:2] + b"\x03\x03\x40\x00\x20" + fwd)     # a corrupted record
        out.append(bytes((sel,)) + fwd + b"\x02\x0a\x17\x03\x03\x00\x05abcde" + fwd)  # a forged record
        out.append(bytes((sel,)) + b"\xfa\x07\x16\x03\x01\x00\x02\x01\x00" + fwd)      # raw, room 31
    for checks in range(1, 16):                                                  # every check, each certificate
        for odd in (0, 8):
            out.append(bytes((checks << 4 | odd | checks & 1 | checks & 2,)) + fwd + msgs)
    return out


# ------------------------------------------------------------------ tls-session
_SEP = b"\xff\xfe"


def make_tls_session():
    def one(data: bytes) -> None:
        if not data:
            return
        sel = data[0]
        steps = [s for s in data[1:].split(_SEP)][:64]
        c, s = h.make_pair("tls-auth")
        hostile, victim = (c, s) if sel & 1 else (s, c)
        expect = "client" if sel & 1 else "server"
        now = [0.0]
        state = {"k": 0}
        real_queue = hostile._queue_tls          # private: the one place TLS output enters the channel

        def queue(ks, out: bytes) -> None:
            k = state["k"]
            state["k"] += 1
            step = steps[k] if k < len(steps) else b""
            if not step:
                return real_queue(ks, out)
            op, arg = step[0] & 7, step[1:]
            if op == 1:
                out = arg
            elif op == 2:
                out = out[:int.from_bytes(arg[:2], "big") % (len(out) + 1)]
            elif op == 3 and out and len(arg) >= 3:
                b = bytearray(out)
                b[int.from_bytes(arg[1:3], "big") % len(b)] ^= arg[0] or 1
                out = bytes(b)
            elif op == 4:
                out = out + arg
            elif op == 5:
                return None
            real_queue(ks, out)
            if op == 6:
                (hostile if step[0] & 8 else victim).renegotiate(now[0])
            elif op == 7:
                now[0] += (step[0] >> 3) * 2.0
                hostile.handle_timer(now[0])
                victim.handle_timer(now[0])
            return None
        hostile._queue_tls = queue
        for _ in range(6):
            h.pump(c, s, lambda: c.closed or s.closed, max_rounds=60, now=now[0])
            if c.closed or s.closed:
                break
            now[0] += 3.0
            c.handle_timer(now[0])
            s.handle_timer(now[0])
        if victim.established and victim.peer_common_name != expect:
            raise AssertionError(f"up with a peer named {victim.peer_common_name!r}")
    return one


def seeds_tls_session() -> list[bytes]:
    out = []
    for side in (0, 1):
        out.append(bytes((side,)))                                                  # the real handshake
        out.append(bytes((side,)) + _SEP.join([b"", b"", b"\x06", b"", b"", b"\x0e"]))   # renegotiations
        out.append(bytes((side,)) + _SEP.join([b"", b"\x03\x20\x00\x10"]))              # a corrupted record
        out.append(bytes((side,)) + _SEP.join([b"\x02\x00\x20", b""]))                  # a cut one
        out.append(bytes((side,)) + _SEP.join([b"", b"\x04\x15\x03\x03\x00\x02\x02\x28"]))  # an alert after
        out.append(bytes((side,)) + _SEP.join([b"\x05", b"", b"\x7f"]))                 # a record lost, time
        out.append(bytes((side,)) + _SEP.join([b"\x01\x16\x03\x01\x00\x04\x00\x00\x00\x00"]))
    return out


# ------------------------------------------------------------------ fuzz38: the client's batched TLS flight
# `flight-batch`: the client reads a batch's control packets into the memory BIO and drives
# OpenSSL once at end_batch (control.py _advance_now_or_at_batch_end, fp38). A hostile server
# (protection `none`, so the fuzzer needs no key) sends a script of batches built from what a
# real server sent (the hard reset and its TLS flight, then whatever it answers at each
# exchange): packets as they were, twice, ACK-only ones, ids beyond the window, garbage TLS
# records at the next id, corrupted copies, the same packet thousands of times in one batch.
# Steps: an op byte (low 3 bits: what, the rest `arg`), some with one more byte `x` (op 3, 5, 7)
# or a length byte and data (op 4):
#
#   0 pool[arg] as it is                      4 CONTROL_V1 at the next id + x % 3, data as its payload
#   1 pool[arg] twice                         5 pool[arg] with its payload's byte x xored
#   2 ACK_V1 of id arg                        6 end the batch; the client's output to the real
#   3 pool[arg] with its id + 12 + x            server, its answers into the pool; arg odd: time
#     (beyond the receive window)               moves arg s, both timers run
#                                             7 pool[arg] 16 x (x % 128 + 1) times in the batch
#
# Then the rest is moved both ways, batch by batch, with the timers, until the client is up or
# ended. Oracles: nothing escapes receive/end_batch/settle; an ended session ends as an error of
# the peer's (a TLS error, a protocol error, the control flood) -- never an internal one; after
# each end_batch the bytes the client's TLS BIO still holds are at most what this batch fed it
# and what was held before it (in the BIO, or in the reliable layer past a gap the batch
# filled); the client is up only with the real server (its common name); and a script of ops
# 0-2 and 6 alone (valid packets in any order, duplicated, acked anyhow) ends the same as the
# same packets fed one per batch on a fresh pair (picked from the server's first flight), and
# up, when no time passes in the script.

FLIGHT_POOL_MAX = 256


def _flight_pair():
    """A client and a real server (protection none) up to the server's TLS flight: the pool."""
    c, s = h.make_pair("plain")
    c.prime()
    pool: list[bytes] = []
    for p in c.take_outgoing():
        s.receive(bytes(p), 0.0)
    first = [bytes(p) for p in s.take_outgoing()]
    for p in first:
        c.receive(p, 0.0)
    pool.extend(first)
    for p in c.take_outgoing():
        s.receive(bytes(p), 0.0)
    pool.extend(bytes(p) for p in s.take_outgoing())
    return c, s, pool


def _reencode(p: bytes, shift: int = 0) -> bytes | None:
    """A pool packet (a control packet with a message id) again, its id moved by `shift`."""
    from appliance.openvpn.packet import decode_body_untrusted, encode_body
    try:
        cb = decode_body_untrusted(p[0] >> 3, p[9:])
    except Exception:  # noqa: BLE001 - a pool packet without a body (never: the real server's)
        return None
    if cb.msg_id is None:
        return None
    return p[:9] + encode_body(cb.acks, cb.peer_sid, (cb.msg_id + shift) & 0xFFFFFFFF, cb.payload)


def _flight_steps(data: bytes):
    i = 0
    while i < len(data):
        op = data[i]
        i += 1
        kind, arg = op & 7, op >> 3
        if kind in (3, 5, 7):
            x = data[i] if i < len(data) else 0
            i += 1
            yield kind, arg, x, b""
        elif kind == 4:
            n = data[i] if i < len(data) else 0
            yield kind, arg, 0, data[i + 1:i + 1 + n]
            i += 1 + n
        else:
            yield kind, arg, 0, b""


def _bio_pending(c) -> int:
    ks = c.keys.get(0)
    if ks is None or ks.tls is None:
        return 0
    from OpenSSL._util import ffi
    return _lib.BIO_get_mem_data(ks.tls._into, ffi.new("char **"))    # the bytes not read yet


def _run_flight(steps, one_per_batch: bool):
    from appliance.openvpn import events as ev
    from appliance.openvpn.opcodes import Op
    from appliance.openvpn.packet import encode_body
    c, s, pool = _flight_pair()
    now = [0.0]
    batch: list[bytes] = []

    def feed(packets: list[bytes]) -> None:
        groups = [[p] for p in packets] if one_per_batch else [packets]
        for g in groups:
            ks = c.keys.get(0)
            # What the BIO held, and what the reliable layer held past a gap (released by this batch)
            before = _bio_pending(c) + (ks.reliable.recv_buffered if ks is not None else 0)
            c.begin_batch()
            fed = 0
            for p in g:
                fed += len(p)
                c.receive(p, now[0])
            if c.end_batch(now[0]):
                for q in c.take_outgoing():
                    s.receive(bytes(q), now[0])
            c.settle(now[0])
            left = _bio_pending(c)
            if left > before + fed:
                raise AssertionError(f"the TLS BIO holds {left} bytes after a batch of {fed} ({before} held before)")

    def exchange(advance: float) -> None:
        feed(batch)
        batch.clear()
        if advance:
            now[0] += advance
            c.handle_timer(now[0])
            s.handle_timer(now[0])
        for q in c.take_outgoing():
            s.receive(bytes(q), now[0])
        for q in s.take_outgoing():
            if len(pool) < FLIGHT_POOL_MAX:
                pool.append(bytes(q))

    server_sid = pool[0][1:9]
    for kind, arg, x, body in steps:
        if c.closed:
            break
        p = pool[arg % len(pool)]
        if kind == 0:
            batch.append(p)
        elif kind == 1:
            batch += [p, p]
        elif kind == 2:
            batch.append(bytes(((Op.ACK_V1 << 3),)) + server_sid + encode_body([arg], c.own_sid, None))
        elif kind == 3:
            q = _reencode(p, shift=12 + x)
            if q is not None:
                batch.append(q)
        elif kind == 4:
            ks = c.keys.get(0)
            nxt = ks.reliable.next_recv_id if ks is not None else 1
            batch.append(bytes(((Op.CONTROL_V1 << 3),)) + server_sid + encode_body([], None, nxt + x % 3, body))
        elif kind == 5:
            q = _reencode(p)
            if q is not None and len(q) > 9:
                b = bytearray(q)
                b[len(b) - 1 - x % max(1, len(b) - 30)] ^= x | 1
                batch.append(bytes(b))
        elif kind == 6:
            exchange(float(arg) if arg & 1 else 0.0)
        elif kind == 7:
            batch += [p] * (16 * (x % 128 + 1))
    # The rest moved both ways until the client is up or ended (the world's retransmissions).
    pending, batch[:] = list(batch), []
    for _ in range(60):
        if c.closed or c.established:
            break
        if pending:
            feed(pending)
        for q in c.take_outgoing():
            s.receive(bytes(q), now[0])
        pending = [bytes(q) for q in s.take_outgoing()]
        if not pending and not c.out:
            now[0] += 2.5
            c.handle_timer(now[0])
            s.handle_timer(now[0])
            pending = [bytes(q) for q in s.take_outgoing()]
    closed = [e for e in c.events if isinstance(e, ev.SessionClosed)]
    return c, s, closed


def make_flight_batch():
    def one(data: bytes) -> None:
        steps = list(_flight_steps(data[:512]))
        c, _s, closed = _run_flight(steps, one_per_batch=False)
        if c.established and c.peer_common_name != "server":
            raise AssertionError(f"up with a peer named {c.peer_common_name!r}")
        for e in closed:
            if "internal" in e.reason.lower():
                raise AssertionError(f"the session ended on our own error: {e.reason}")
        # Valid packets only and no time in the script (the time jumps of op 6 and the pool
        # swallowing what the server sends make hand-window run out on the retransmissions'
        # schedule, legitimately): the client ends up (a batch whose TLS is never driven would
        # leave both runs below down alike).
        kinds = [k for k, *_ in steps]
        valid = all(k in (0, 1, 2, 6) for k in kinds) and not any(k == 6 and a & 1 for k, a, *_ in steps)
        if valid and not c.established:
            raise AssertionError(f"valid packets only, yet the client is not up: {[e.reason for e in closed]}")
        # The same packets one per batch: only where they are the same, those of the server's first
        # flight (after an exchange the pools differ: the client's replies, batched or not, differ
        # in shape, and so do the server's answers and their order in the pool).
        first_exchange = kinds.index(6) if 6 in kinds else len(kinds)
        if valid and not any(k in (0, 1) for k in kinds[first_exchange:]):
            c1, _s1, closed1 = _run_flight(steps, one_per_batch=True)
            if (c.established, c.closed) != (c1.established, c1.closed):
                raise AssertionError(f"batched: up {c.established}, ended {[e.reason for e in closed]}; "
                                     f"one per batch: up {c1.established}, ended {[e.reason for e in closed1]}")
    return one


def seeds_flight_batch() -> list[bytes]:
    return [
        b"",                                             # the flight as the world delivers it
        bytes((0 | 1 << 3, 0 | 2 << 3, 0 | 3 << 3, 6)),  # the flight in one batch, then exchanged
        bytes((0 | 3 << 3, 0 | 2 << 3, 0 | 1 << 3, 1 | 2 << 3, 2 | 1 << 3, 6, 2 | 7 << 3)),  # any order, twice
        bytes((0 | 1 << 3, 3 | 2 << 3, 0, 0 | 2 << 3, 6)),        # an id beyond the window
        bytes((0 | 1 << 3, 4, 0, 7, 0x16, 3, 3, 0, 2, 0, 0, 6)),  # a short record at the next id
        bytes((0 | 1 << 3, 4, 0, 5, 0x17, 3, 3, 0x40, 0, 6)),     # a record claiming 16 KiB
        bytes((0 | 1 << 3, 5 | 2 << 3, 40, 0 | 3 << 3, 6)),       # a corrupted flight packet
        bytes((7 | 1 << 3, 127, 0 | 2 << 3, 0 | 3 << 3, 6)),      # one packet 2,048 times in a batch
        bytes((0 | 1 << 3, 0 | 2 << 3, 0 | 3 << 3, 6, 0 | 4 << 3, 0 | 5 << 3, 0 | 6 << 3, 0 | 7 << 3, 6)),
        bytes((0 | 1 << 3, 0 | 2 << 3, 6 | 3 << 3, 0 | 3 << 3, 6 | 5 << 3)),     # time between batches
    ]
