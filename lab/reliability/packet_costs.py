"""What one packet costs the server's dispatcher, by who sends it and what it is: in memory (no I/O,
no other process), so the figures do not depend on a shared machine's load, unlike the lab runs of
lab/reliability/authattack.py. Why: a packet flood's reach is the server's cost per packet times
the rate; what holding the keys adds is the difference from anybody's garbage.

    python -m lab.reliability.packet_costs [--n 20000]

Prints microseconds per packet (best of 3 runs) for: a legitimate data packet, random bytes,
a forged reset under a wrong tls-crypt key, a data packet under another client's peer-id, data
under a dead key id, a correctly wrapped ACK of a live session, a correctly wrapped control packet
of a session the server no longer has."""
from __future__ import annotations

import argparse
import os
import struct
import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings


def _pem(c) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _kpem(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _icmp(src: str, dst: str) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 1, 0, bytes(map(int, src.split("."))),
                      bytes(map(int, dst.split("."))))
    return hdr + b"\x08\x00\xf7\xff\x00\x00\x00\x00"


def setup():
    ca = issue("Test CA", None, None)
    srv = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    stls = TlsSettings(_pem(ca[0]), _pem(srv[0]), _kpem(srv[1]), True, remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60),
        protection="tls-crypt", static_key=key, pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"),
        connect_freq_initial=None)
    d = ServerDispatcher(st, 0.0)
    clients = []
    for i in range(2):
        c = issue(f"client{i}", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
        cfg = SessionConfig(Role.CLIENT, TlsSettings(_pem(ca[0]), _pem(c[0]), _kpem(c[1]), False,
                                                     remote_cert_tls="server"),
                            lambda: wrapping.TlsCryptWrapper(key, False))
        s = Session(cfg, 0.0)
        s.start(0.0)
        clients.append((s, (f"198.18.0.{i + 2}", 40000)))
    for _ in range(60):
        moved = 0
        for s, a in clients:
            for p in s.take_outgoing():
                d.receive(p, a, 0.5)
                moved += 1
        for p, addr in d.take_outgoing():
            for s, a in clients:
                if a == addr:
                    s.receive(p, 0.5)
                    moved += 1
        if not moved:
            break
    assert all(any(isinstance(e, ev.TunnelUp) for e in s.events) for s, _ in clients)
    return d, key, clients


def measure(n: int) -> dict[str, float]:
    d, key, [(evil, ea), (victim, va)] = setup()
    vrec = d.route(victim.pushed.ifconfig[0])
    ping = _icmp(evil.pushed.ifconfig[0], "198.19.0.1")
    wrong = wrapping.TlsCryptWrapper(keyfiles.parse_static_key(keyfiles.generate_static_key()), False)
    right = wrapping.TlsCryptWrapper(key, False)

    def legit():
        return [victim.encrypt(_icmp(victim.pushed.ifconfig[0], "198.19.0.1")) for _ in range(n)], va

    def garbage():
        return [os.urandom(120) for _ in range(n)], ea

    def forged_reset():
        r = op_byte(Op.CONTROL_HARD_RESET_CLIENT_V2, 0)
        return [wrong.wrap(r, os.urandom(8), encode_body([], None, 0), 1.0) for _ in range(n)], ea

    def foreign_peer_id():
        return [(p := evil.encrypt(ping))[:1] + vrec.peer_id.to_bytes(3, "big") + p[4:] for _ in range(n)], ea

    def dead_key():
        out = []
        for i in range(n):
            p = evil.encrypt(ping)
            out.append(bytes([(p[0] & ~7) | ((evil.send_key.key_id + 1 + i % 7) % 8)]) + p[1:])
        return out, ea

    def acks_live():
        ks = evil._active_ks()
        # Acks of message ids already acked: the session's check, not its budget, is what is measured
        # (the budget would end the session after 1024; see control.py CONTROL_BURST).
        return [evil.wrapper.wrap((int(Op.ACK_V1) << 3) | ks.key_id, evil.own_sid,
                                  encode_body([0], evil.peer_sid, None), 1.0) for _ in range(min(n, 900))], ea

    def orphan_control():
        sid, peer = os.urandom(8), os.urandom(8)
        return [right.wrap(int(Op.CONTROL_V1) << 3, sid, encode_body([0], peer, 5 + i, os.urandom(100)), 1.0)
                for i in range(n)], ("198.18.0.99", 1)

    res = {}
    for name, make in [("legitimate data packet", legit), ("random bytes", garbage),
                       ("reset under a wrong tls-crypt key", forged_reset),
                       ("data under another client's peer-id", foreign_peer_id),
                       ("data under a dead key id", dead_key), ("wrapped ACK of a live session", acks_live),
                       ("wrapped control packet of no session", orphan_control)]:
        best = float("inf")
        for _ in range(3):
            pkts, addr = make()
            t0 = time.process_time()
            for p in pkts:
                d.receive(p, addr, 2.0)
            best = min(best, (time.process_time() - t0) / len(pkts))
            d.take_outgoing()
            d.events.clear()
        res[name] = round(best * 1e6, 2)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    a = ap.parse_args(argv)
    for k, v in measure(a.n).items():
        print(f"{v:8.2f} us  {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
