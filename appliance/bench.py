"""`vpn-appliance bench`: the data channel with no I/O, client and server engines wired in memory.

Why this benchmark: it isolates the per-packet protocol cost (sealing, opening, replay window,
dispatch) from system calls, so an engine change shows up here first. Certificates are generated
in memory; the handshake is not timed. Besides the wall-clock rate it prints the CPU time per
packet (time.process_time): on a busy machine that one still says what the code costs.
"""
from __future__ import annotations

import time

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from .openvpn.session import Role, Session, SessionConfig
from .openvpn.tls import TlsSettings
from .openvpn.wrapping import PlainWrapper
from .certs import issue as _issue


def _cert(cn, issuer=None, eku=None):
    """An ECDSA P-256 certificate (a CA when `issuer` is None), as the interop lab makes them."""
    return _issue(cn, issuer, eku)


def _pems(c):
    return (c[0].public_bytes(serialization.Encoding.PEM),
            c[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()))


def connected_pair(cipher: str) -> tuple[Session, Session]:
    ca = _cert("bench CA")
    ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)
    s_cert, s_key = _pems(_cert("server", ca, ExtendedKeyUsageOID.SERVER_AUTH))
    c_cert, c_key = _pems(_cert("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    client = Session(SessionConfig(Role.CLIENT, TlsSettings(ca_pem, c_cert, c_key, False), PlainWrapper,
                                   data_ciphers=[cipher], auth="SHA256"), 0.0)
    server = Session(SessionConfig(Role.SERVER, TlsSettings(ca_pem, s_cert, s_key, True), PlainWrapper,
                                   data_ciphers=[cipher], data_ciphers_fallback=cipher, auth="SHA256", peer_id=1,
                                   push_options=lambda s: ["ifconfig 198.19.0.2 255.255.255.0", "topology subnet"]),
                     0.0)
    client.start(0.0)
    for _ in range(50):
        a, b = client.take_outgoing(), server.take_outgoing()
        if not a and not b:
            break
        for p in a:
            server.receive(p, 0.0)
        for p in b:
            client.receive(p, 0.0)
    if not (client.established and server.established):
        raise RuntimeError("in-memory handshake did not complete")
    return client, server


def _run(sender: Session, receiver: Session, n: int, payload: bytes) -> tuple[float, float]:
    """-> (wall seconds, CPU seconds) for n packets sealed by `sender` and opened by `receiver`."""
    enc, rcv = sender.encrypt, receiver.receive
    got = 0
    c = time.process_time()
    t = time.perf_counter()
    for _ in range(n):
        got += len(rcv(enc(payload), 1.0))
    dt = time.perf_counter() - t
    dc = time.process_time() - c
    if got != n:
        raise RuntimeError(f"only {got} of {n} packets arrived")
    return dt, dc


def main(packets: int = 50000, ciphers: str = "AES-128-GCM,AES-256-GCM,CHACHA20-POLY1305", size: int = 1400) -> int:
    payload = bytes([0x45]) + bytes(size - 1)
    print(f"in-memory data channel: {packets} packets of {size} bytes each way, one thread, no I/O")
    print(f"{'cipher':20} {'direction':16} {'packets/s':>12} {'Mbit/s':>10} {'us/packet':>10} {'cpu us/packet':>14}")
    for cipher in [c.strip().upper() for c in ciphers.split(",") if c.strip()]:
        client, server = connected_pair(cipher)
        _run(client, server, min(2000, packets), payload)   # warm-up
        for name, a, b in (("client->server", client, server), ("server->client", server, client)):
            dt, dc = _run(a, b, packets, payload)
            pps = packets / dt
            print(f"{cipher:20} {name:16} {pps:12,.0f} {pps * size * 8 / 1e6:10,.0f} {dt / packets * 1e6:10.2f} "
                  f"{dc / packets * 1e6:14.2f}")
    return 0
