"""The point-to-point tls-server's UDP port: bound to its port, one peer at a time.

Why not the client's connected UdpLink: a p2p tls-server (OpenVPN 2.6 without `remote`) does not
know its peer until the peer's first reset arrives, and a restarted peer (or, with `float`, a
peer whose address changed) comes back with a new reset, possibly from elsewhere. So the socket
stays unconnected and this link sorts what arrives:
  - the current peer's datagrams go to the live session, as a connected socket's would;
  - a client hard reset (the start of a new TLS session) from anyone allowed is set aside in
    `newcomers` for the gateway, which runs it in a session of its own beside the live one and
    lets it take over only once it has authenticated (gateway/p2p_server.py) -- so a stranger's
    or a replayed reset never disturbs the tunnel;
  - with `float`, data packets from elsewhere are set aside in `floaters`: one the live session's
    keys authenticate (not a replay) moves the peer there, as 2.6's --float;
  - everything else from elsewhere is dropped and counted (junk, or a peer we do not know).
With `remote` in the config, only that address may be the peer (any port with `float`), as 2.6
checks incoming packets against its remote unless --float.
"""
from __future__ import annotations

from ..openvpn.opcodes import HARD_RESET_CLIENT_OPS, OPCODE_SHIFT
from .link import _DATA_OPS, UdpLink

NEWCOMERS_MAX = 8            # resets kept per read for the gateway; more in one batch are dropped


def is_client_reset(data) -> bool:
    return len(data) >= 9 and (data[0] >> OPCODE_SHIFT) in HARD_RESET_CLIENT_OPS


def _host(addr: tuple) -> str:
    return str(addr[0]).removeprefix("::ffff:")


def same_addr(a: tuple, b: tuple) -> bool:
    return _host(a) == _host(b) and a[1] == b[1]


class P2PListenLink(UdpLink):
    """An unconnected datagram port with one current peer (`addr`, None until one is chosen);
    UdpLink's descriptor, spill, flush, errors and close, its own receiving and sending."""

    def __init__(self, transport, allowed: tuple[str, int] | None, float_: bool) -> None:
        super().__init__(transport, None)
        self.allowed = allowed          # `remote`: the only peer address allowed (port too unless float)
        self.float = float_
        self.newcomers: list[tuple[bytes, tuple]] = []
        self.floaters: list[tuple[bytes, tuple]] = []      # with float: data from elsewhere, to authenticate
        self.dropped = 0
        # Set by the gateway: the live session's peer session id (a reset from the peer's own
        # address with another one is a new session: the peer restarted), and the session
        # trying to take over, as (address, its peer's session id).
        self.live_sid: bytes | None = None
        self.candidate: tuple[tuple, bytes] | None = None
        # Set by the gateway: the live session has authenticated the peer at `addr` (until then
        # `addr` is only where the first reset came from, which anyone may have sent).
        self.proven = False

    def may_be_peer(self, src: tuple) -> bool:
        a = self.allowed
        if a is None:
            return True
        return _host(src) == _host(a) and (self.float or src[1] == a[1])

    def is_peer(self, src: tuple) -> bool:
        return self.addr is not None and same_addr(src, self.addr)

    def recv_packets(self, limit: int = 64) -> list:
        out = []
        for data, src in self.t.recv_batch(limit):
            src = src[:2]
            reset = is_client_reset(data)
            cand = self.candidate
            if cand is not None and same_addr(src, cand[0]) and len(data) >= 9 and (data[0] >> OPCODE_SHIFT) \
                    not in _DATA_OPS and bytes(data[1:9]) == cand[1]:
                self._set_aside(data, src)            # the new session's control packets
            elif self.is_peer(src) and not (reset and self.live_sid is not None and bytes(data[1:9]) != self.live_sid):
                out.append(data)
            elif self.float and self.addr is not None and not reset and len(data) > 0 \
                    and (data[0] >> OPCODE_SHIFT) in _DATA_OPS and self.may_be_peer(src):
                # `float`: the peer's data from a new address; it moves the peer only if the live
                # session's keys authenticate it (the gateway checks), a replay or forgery never.
                if len(self.floaters) < NEWCOMERS_MAX:
                    self.floaters.append((bytes(data), src))
                else:
                    self.dropped += 1
            elif reset and self.may_be_peer(src):
                if self.addr is None:
                    self.addr = src                   # the first reset chooses the peer (until it fails)
                    out.append(data)
                else:
                    self._set_aside(data, src)
            else:
                self.dropped += 1
        return out

    def _set_aside(self, data, src: tuple) -> None:
        if len(self.newcomers) < NEWCOMERS_MAX:
            self.newcomers.append((bytes(data), src))
        else:
            self.dropped += 1

    def local_address(self) -> str | None:
        return None

    def send_packets(self, packets: list, addr: tuple | None = None) -> None:
        to = addr if addr is not None else self.addr
        if packets and to is not None:
            self.t.send_batch(packets, to)
