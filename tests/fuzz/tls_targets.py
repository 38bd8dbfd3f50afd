"""The TLS glue as a hostile peer drives it (appliance/openvpn/tls.py, and control.py's use of it).

`tls-endpoint`: one of our TlsEndpoints (client or server: the victim) against an honest
endpoint whose records a script forwards, cuts, corrupts, or replaces, with raw bytes fed
between them, application messages either way, the tls-verify verdict, and the peer asking for
a renegotiation (TLS 1.2) at any time. A fresh pair per input.

First byte: bit 0 the victim is the server (else the client), bit 1 TLS 1.2 at most (else 1.3),
bit 2 tls-verify (the victim holds the handshake for a verdict), bit 3 the honest client sends no
certificate (a server victim must refuse it). Then steps: an op byte (low 3 bits: what; the
rest an argument) and, for ops with data, a length byte and the data:

  0 forward all of the peer's pending records     4 the peer sends a message (data)
  1 forward the first `len` bytes of them         5 the victim sends a message (data)
  2 feed raw bytes (data), `room` = op >> 3       6 the tls-verify verdict (op bit 3: yes)
  3 xor data[0] into the pending records at       7 the peer asks for a renegotiation (TLS 1.2;
    data[1:3] (a corrupted real record)             op bit 3: the victim too, which refuses it)

After each step the victim pumps and what it writes goes to the peer, which pumps in turn.
Contract: feed/pump/send_message raise nothing but RemoteProtocolError (VerifyRefused included);
after one the endpoint is dead and the script ends. Oracles: the victim completes a handshake
only with a verified peer of the expected name (the fuzzer holds no key); while held for
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

from OpenSSL._util import lib as _lib

from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context, common_name

from . import harness as h

OUTPUT_MAX = 1 << 20          # what the victim may write in one input (a handshake is ~4 KB)


@functools.lru_cache(maxsize=None)
def _ctx(server: bool, tls12: bool, hold: bool, cert: bool):
    p = h.pki()
    own = p["server"] if server else p["client"]
    s = TlsSettings(p["ca"], *(own if cert else (None, None)), server,
                    remote_cert_tls="client" if server else "server",
                    tls_version_max="1.2" if tls12 else None, hold_for_verdict=hold)
    return build_context(s), s


def _endpoint(server: bool, tls12: bool, hold: bool = False, cert: bool = True) -> TlsEndpoint:
    ctx, s = _ctx(server, tls12, hold, cert)
    return TlsEndpoint(ctx, s)


class _Dead(Exception):
    """The victim raised its documented error: the script ends."""


def make_tls_endpoint():
    def one(data: bytes) -> None:
        if not data:
            return
        sel = data[0]
        server, tls12, hold, nocert = bool(sel & 1), bool(sel & 2), bool(sel & 4), bool(sel & 8)
        victim = _endpoint(server, tls12, hold)
        peer = _endpoint(not server, tls12, cert=not (nocert and server))
        expect = "client" if server else "server"
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
                if victim.peer_cert is None or common_name(victim.peer_cert) != expect or victim.peer_cn != expect:
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
            if victim.handshake_done and victim.peer_cn != expect:
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
