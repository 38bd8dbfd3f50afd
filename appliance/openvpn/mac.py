"""HMAC with a key fixed for the object's life: the per-packet MACs of tls-auth, tls-crypt, the
server's cookie and CBC data packets.

Why not `hmac.digest(key, msg, name)`: with OpenSSL 3 every call fetches the digest by name and
keys a fresh MAC context (provider lookups, locks, allocations): 8 us warm, and 20-25 us in a
handshake, where the caches are cold from the peer's and the kernel's work in between; it was
~10% of a client's CPU per handshake in memory (py-spy, tls-crypt). Keying once and copying the
keyed context per message skips all of that; the result is the same HMAC.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

_HASHES = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
           "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class KeyedMac:
    """`KeyedMac(key, "sha256").digest(msg) == hmac.digest(key, msg, "sha256")`, for any digest
    hashlib knows (the SHA-2 family and SHA-1 through `cryptography`, the rest through the
    stdlib's keyed HMAC object: also copied, not re-keyed). ValueError for an unknown name."""

    __slots__ = ("_template", "_sha", "size")

    def __init__(self, key: bytes, digest: str = "sha256") -> None:
        name = digest.lower().replace("-", "")
        algo = _HASHES.get(name)
        self._sha = algo is not None
        self._template: HMAC | hmac.HMAC
        if algo is not None:
            self._template = HMAC(bytes(key), algo())
            self.size = algo.digest_size
        else:
            self._template = hmac.new(bytes(key), digestmod=name)
            self.size = self._template.digest_size

    def digest(self, msg: bytes) -> bytes:
        h = self._template.copy()
        h.update(msg)
        return h.finalize() if self._sha else h.digest()
