"""The tls-crypt-v2 server's look at a client's wrapped key (WKc) in a first packet: unwrap it,
build the client key's tls-crypt context, and bound what that costs.

Why apart from the dispatcher: this is pre-authentication work a stranger chooses the amount of,
worth reading with its bounds in one place. OpenVPN 2.6 unwraps the WKc of every
HARD_RESET_CLIENT_V3 and CONTROL_WKC_V1 from an unknown address before anything else
(ssl_pkt.c tls_pre_decrypt_lite -> read_control_auth -> tls_crypt.c
tls_crypt_v2_extract_client_key: tls_crypt_v2_unwrap_client_key, then the key's contexts,
tls_crypt_v2_load_client_key), and only then checks its cookie (mudp.c do_pre_decrypt_check) --
necessarily: the cookie it echoes is inside the part Kc encrypts. We do the same, in the same
order; in C that is a few microseconds, here it was (measured on the lab machine, one core):

    a stranger's forged WKc (fails its tag)                  ~23 us   (a forged tls-crypt packet ~11 us)
    a valid WKc (a key holder's own, or one seen on the wire:
    it travels in clear) -- unwrap + a new AES-CTR context
    and keyed HMAC for Kc, for each packet                   ~54-60 us

so a key holder's resets or forged third packets (wrong cookie) cost 5x what a tls-crypt
stranger's do, at ~17,000 a second from one sender. What bounds it here:

- a valid WKc's result (the client key and its tls-crypt context for the stateless checks, which
  record no replay ids) is kept for the next packets with the same WKc bytes, most recently used
  first, CACHE_SIZE of them: a client's third packet, its resends and a key holder's flood reuse
  it (~tls-crypt's cost). A forged WKc never gets in (only what authenticated is kept).
- building one (a WKc not kept) takes a unit from a budget of BUILD_BURST that refills by
  BUILD_RATE a second, taken only once the WKc authenticated: a stranger without a key cannot
  spend it, so cannot lock new clients out with it (as connect-freq-initial, which the same
  valid resets spend anyway). Past it the packet is dropped, counted ("tls-crypt-v2 client keys
  over the unwrap rate") -- in the "dropped packets" line, logged at most every 5 s.
  Honest demand: one build per client key starting a handshake (its third packet hits the cache).
A forged WKc still costs its decryption and tag check, as in 2.6: the tag is over the plaintext.
"""
from __future__ import annotations

from collections import OrderedDict

from . import keyfiles, wrapping
from .errors import BadPacket
from .server_model import V2Key

CACHE_SIZE = 256
BUILD_BURST = 256.0
BUILD_RATE = 64.0
OVER_RATE = "tls-crypt-v2 client keys over the unwrap rate"


class ClientKeyCache:
    """One server key's WKc unwraps (see the module docstring); one thread uses it."""

    __slots__ = ("_unwrapper", "_server_key", "_kept", "_budget", "_budget_at")

    def __init__(self, server_key: bytes) -> None:
        self._server_key = server_key
        self._unwrapper: keyfiles.ClientKeyUnwrapper | None = None   # made at the first WKc
        self._kept: OrderedDict[bytes, tuple[V2Key, wrapping.TlsCryptWrapper]] = OrderedDict()
        self._budget = BUILD_BURST
        self._budget_at: float | None = None

    def unwrap_untrusted(self, wkc: bytes, now: float) -> tuple[V2Key, wrapping.TlsCryptWrapper]:
        """(the client key, a tls-crypt wrapper of Kc for stateless unwraps: check_replay=False
        only) for this WKc; BadPacket if it fails authentication or the build budget is spent."""
        kept = self._kept.get(wkc)
        if kept is not None:
            self._kept.move_to_end(wkc)
            return kept
        unwrapper = self._unwrapper
        if unwrapper is None:
            unwrapper = self._unwrapper = keyfiles.ClientKeyUnwrapper(self._server_key)
        v2 = V2Key(*unwrapper.unwrap_untrusted(wkc))
        if not self._take(now):
            raise BadPacket(OVER_RATE)
        kept = (v2, wrapping.TlsCryptWrapper(v2.kc, True))
        self._kept[bytes(wkc)] = kept
        if len(self._kept) > CACHE_SIZE:
            self._kept.popitem(last=False)
        return kept

    def _take(self, now: float) -> bool:
        if self._budget_at is not None:
            self._budget = min(BUILD_BURST, self._budget + max(0.0, now - self._budget_at) * BUILD_RATE)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True
