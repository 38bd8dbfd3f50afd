"""Building blocks for the fuzz targets: keys, certificates, an in-memory client/server pair.

Kept apart from tests/engine so the fuzzer does not depend on another suite's private helpers.
Everything here is deterministic where the engine lets it be (fixed static keys, a fixed
cookie secret), so a crasher replays the same way in a fresh process.
"""
from __future__ import annotations

import functools
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue as _issue
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings

PROTECTIONS = ("plain", "tls-auth", "tls-crypt", "tls-crypt-v2")


def det_bytes(label: str, n: int) -> bytes:
    """n deterministic pseudo-random bytes named by `label`."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


class Counter:
    """A deterministic random_bytes for sessions and dispatchers (fuzz runs must replay)."""

    def __init__(self, label: str) -> None:
        self.label, self.i = label, 0

    def __call__(self, n: int) -> bytes:
        self.i += 1
        return det_bytes(f"{self.label}/{self.i}", n)


STATIC_KEY = det_bytes("static-key", 256)          # tls-auth / tls-crypt
V2_SERVER_KEY = det_bytes("v2-server-key", 128)    # tls-crypt-v2 server key (Ke ‖ Ka)
V2_KC = det_bytes("v2-client-key", 256)
V2_WKC = keyfiles.wrap_client_key(V2_KC, V2_SERVER_KEY, b"fuzz-client", keyfiles.METADATA_TYPE_USER)


def _pem(c) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


def _kpem(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption())


@functools.lru_cache(maxsize=1)
def pki() -> dict:
    ca = _issue("fuzz CA", None, None)
    server = _issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    client = _issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    return {"ca": _pem(ca[0]), "server": (_pem(server[0]), _kpem(server[1])),
            "client": (_pem(client[0]), _kpem(client[1]))}


def client_wrapper(protection: str):
    """A client-side wrapper (what a real peer would send with)."""
    return {"plain": wrapping.PlainWrapper,
            "tls-auth": lambda: wrapping.TlsAuthWrapper(STATIC_KEY, 1, "SHA256"),
            "tls-crypt": lambda: wrapping.TlsCryptWrapper(STATIC_KEY, False),
            "tls-crypt-v2": lambda: wrapping.TlsCryptV2ClientWrapper(V2_KC, V2_WKC)}[protection]()


def server_wrapper(protection: str):
    return {"plain": wrapping.PlainWrapper,
            "tls-auth": lambda: wrapping.TlsAuthWrapper(STATIC_KEY, 0, "SHA256"),
            "tls-crypt": lambda: wrapping.TlsCryptWrapper(STATIC_KEY, True),
            "tls-crypt-v2": lambda: wrapping.TlsCryptWrapper(V2_KC, True)}[protection]()


def make_pair(protection: str = "tls-crypt", cipher: str = "AES-256-GCM", peer_id: int | None = 5,
              push=None, **kw) -> tuple[Session, Session]:
    p = pki()
    common = dict(proto="udp", auth="SHA256", **kw)
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(p["ca"], *p["client"], False, remote_cert_tls="server"),
                              lambda: client_wrapper(protection), data_ciphers=[cipher],
                              data_ciphers_fallback=cipher if cipher.endswith("CBC") else None,
                              early_negotiation=protection == "tls-crypt-v2",
                              random_bytes=Counter("client"), **common), 0.0)
    s = Session(SessionConfig(Role.SERVER, TlsSettings(p["ca"], *p["server"], True, remote_cert_tls="client"),
                              lambda: server_wrapper(protection), data_ciphers=[cipher], peer_id=peer_id,
                              push_options=push or (lambda _s: ["ifconfig 198.19.0.2 255.255.255.0",
                                                                "topology subnet"]),
                              random_bytes=Counter("server"), **common), 0.0)
    c.start(0.0)
    return c, s


def pump(c: Session, s: Session, until, max_rounds: int = 200, now: float = 0.0,
         tap=None) -> bool:
    """Move packets both ways (stripping the WKc the dispatcher would strip) until `until()`.

    `tap(direction, packet)` sees every packet ("c2s"/"s2c") before delivery."""
    for _ in range(max_rounds):
        if until():
            return True
        moved = 0
        for p in c.take_outgoing():
            p = bytes(p)
            if tap:
                tap("c2s", p)
            if p[0] >> 3 in (10, 11):
                p, _ = wrapping.split_wkc_untrusted(p)
            s.receive(p, now)
            moved += 1
        for p in s.take_outgoing():
            p = bytes(p)
            if tap:
                tap("s2c", p)
            c.receive(p, now)
            moved += 1
        if not moved:
            return until()
    return until()


def established_pair(protection: str = "tls-crypt", cipher: str = "AES-256-GCM", tap=None,
                     **kw) -> tuple[Session, Session]:
    c, s = make_pair(protection, cipher, **kw)
    if not pump(c, s, lambda: c.established and s.established, tap=tap):
        raise RuntimeError(f"in-memory pair did not come up ({protection}, {cipher})")
    return c, s
