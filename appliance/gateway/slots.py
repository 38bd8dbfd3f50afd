"""The share of a bounded queue of slow jobs that each holder may take: in all, per source address
(an IPv6 /64 counts as one: openvpn/sources.py) and per identity (a certificate, a tls-crypt-v2
client key, a username).

Why a cap per identity besides the one per source: the jobs (tls-verify, tls-crypt-v2-verify,
auth-user-pass-verify) run only for a peer holding something valid, so the per-source cap alone
let ONE stolen certificate or client key, used from 16 addresses, hold every slot while the
command was slow, and every other client was refused. The one place that decides admission for
tlsverify.VerifyRunner and auth.AuthChecker; each caller words the refusal its own way.
"""
from __future__ import annotations

import hashlib

TOTAL, SOURCE, IDENTITY = "total", "source", "identity"


def identity_of_cert(cert) -> str | None:
    """A certificate's identity for the caps: its SHA-256 fingerprint (cryptography x509), or None
    for no certificate (or one that cannot be encoded: no identity, the per-source cap holds)."""
    if cert is None:
        return None
    try:
        from cryptography.hazmat.primitives import serialization
        return "cert:" + hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    except Exception:  # noqa: BLE001 - an odd certificate only loses the identity cap
        return None


def identity_of_v2_key(key_digest: bytes) -> str:
    """A tls-crypt-v2 client key's identity: the engine's digest of the key itself (Kc:
    server_model.V2Key.digest), not of its metadata, which two clients' keys may share (a group's
    user metadata, a timestamp made in one second)."""
    return "v2:" + bytes(key_digest).hex()


class Slots:
    """How many jobs each source and each identity holds now. `refusal` says which cap a new job
    would pass (None: none); `take` and `free` count it in and out (the same arguments)."""

    def __init__(self, total: int, per_source: int, per_identity: int) -> None:
        self.total = total
        self.per_source = per_source
        self.per_identity = per_identity
        self.by_source: dict[str, int] = {}
        self.by_identity: dict[str, int] = {}

    def held(self) -> int:
        return sum(self.by_source.values())

    def refusal(self, source: str, identities: tuple[str, ...] = (), capped: bool = True) -> str | None:
        """TOTAL, SOURCE or IDENTITY: the cap a new job from `source` for `identities` (a job may
        have two: a login's certificate and its username) would exceed; None when it fits or
        `capped` is False (work bounded otherwise: a reload's checks of the clients it keeps)."""
        if not capped:
            return None
        if self.held() >= self.total:
            return TOTAL
        if self.by_source.get(source, 0) >= self.per_source:
            return SOURCE
        if any(self.by_identity.get(i, 0) >= self.per_identity for i in identities):
            return IDENTITY
        return None

    def take(self, source: str, identities: tuple[str, ...] = ()) -> None:
        self.by_source[source] = self.by_source.get(source, 0) + 1
        for i in set(identities):
            self.by_identity[i] = self.by_identity.get(i, 0) + 1

    def free(self, source: str, identities: tuple[str, ...] = ()) -> None:
        _less(self.by_source, source)
        for i in set(identities):
            _less(self.by_identity, i)


def _less(counts: dict[str, int], key: str) -> None:
    n = counts.get(key, 1) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
