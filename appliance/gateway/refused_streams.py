"""TCP connections whose client was just told AUTH_FAILED, kept open a while so that it arrives.

Why: the server closed such a connection in the wake-up that wrote AUTH_FAILED. Two ways that lost
it (review47b, seen against Debian's 2.6.14 client refused at its renegotiation while its traffic
flowed, its receiving side slower than ours: "Connection reset", a reconnect and another login, 3
runs out of 3): what the socket had not taken yet (our queue, transport/tcp.py) went with the
close; and Linux answers a close with unread received data -- the client's packets keep coming
until it reads AUTH_FAILED -- with an RST at once, throwing away whatever of the refusal was still
unsent or unacknowledged. OpenVPN 2.6 keeps a refused client's instance scheduled_exit_interval
(5 s) after AUTH_FAILED (push.c send_auth_failed -> schedule_exit) and only then closes it.

What is kept here is the socket, nothing of the session (it is gone from every book, as any
refusal, in the same step; its own last bytes are all that is left): what is queued is written,
then our side is shut (FIN after the refusal), and what the client sends is read and thrown
away -- never handed to the dispatcher -- so that our close meets no unread data, until the client
closes (it does once it has read AUTH_FAILED), or REFUSAL_HOLD s pass, whichever comes first. A
client's FIN while our refusal is still queued (a client that half-closes, then reads) closes it
only once that is written (helper authq48; it was closed at the FIN and the queue lost).

Bounded as the UDP remnants (openvpn/refusals.py): REFUSALS_MAX at once (the oldest closed first,
counted), REFUSED_STREAM_READ bytes read from each (past it, no more reading: the client's sends
stall in its own window until our close), and each counts against the server's connection cap
(ServerGateway.max_conns: closed first when a new connection needs room).

Per source too (review47e): PER_SOURCE_REFUSED at once from one source address (an IPv6 /64),
a source's newest closing its own oldest. Without it one source refused as fast as its handshakes
go (past its password-check rate each login is told AUTH_FAILED,TEMP with no check; a tls-verify
script's refusal meets no rate either) held all
REFUSALS_MAX: every other source's refused connection was then closed early by the cap, its
AUTH_FAILED lost as before review47b, and the room a full server makes at accept went to it.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from ..openvpn.refusals import REFUSAL_HOLD, REFUSALS_MAX
from ..openvpn.sources import source_group
from ..transport.link import TcpLink
from ..transport.tcp import PeerClosed

# What one refused connection is read at most, thrown away (an honest client sends its last
# data packets and acks until it reads AUTH_FAILED; a hostile one cannot make us read more).
REFUSED_STREAM_READ = 1 << 20
# Held at once from one source (as server.py's PER_SOURCE_CONNS for connections without a
# handshake): an honest address -- a NAT of a few users -- has a wrong password or two at a time.
PER_SOURCE_REFUSED = 8
# Counters (the gateway's drop counters).
EVICTED = "refused TCP connection closed early (too many refused at once or from its source, or no room)"
DISCARDED = "bytes read and dropped from a refused TCP connection"


class RefusedStreams:
    """The refused connections being let go (module docstring), oldest first."""

    def __init__(self, pump, count: Callable[..., None], clock: Callable[[], float]) -> None:
        self.pump = pump
        self.count = count          # Faults.count(reason, n=1)
        self.clock = clock
        self.by_key: OrderedDict[object, list] = OrderedDict()   # key -> [link, bytes left to read, source]
        self.per_source: dict[str, int] = {}                        # source_group -> held from it

    def __len__(self) -> int:
        return len(self.by_key)

    def keep(self, key, link: TcpLink) -> None:
        """`link` (already out of the server's books and unwatched) stays open until its client
        closes or REFUSAL_HOLD s pass."""
        src = source_group(getattr(key, "ip", key))
        if self.per_source.get(src, 0) >= PER_SOURCE_REFUSED:
            self.count(EVICTED)             # that source's own oldest, not another's
            self.close(next(k for k, got in self.by_key.items() if got[2] == src))
        while len(self.by_key) >= REFUSALS_MAX:
            self.close_oldest()
        self.by_key[key] = [link, REFUSED_STREAM_READ, src, False]     # ..., its FIN read
        self.per_source[src] = self.per_source.get(src, 0) + 1
        self.pump.timers.arm(("refused-stream", key), self.clock() + REFUSAL_HOLD, lambda: self.close(key))
        self._write(key)

    def close_oldest(self) -> bool:
        """Room for a new connection: the oldest refused one closed (counted). False if none."""
        if not self.by_key:
            return False
        self.count(EVICTED)
        self.close(next(iter(self.by_key)))
        return True

    def close(self, key) -> None:
        got = self.by_key.pop(key, None)
        self.pump.timers.cancel(("refused-stream", key))
        if got is not None:
            left = self.per_source.pop(got[2]) - 1
            if left:
                self.per_source[got[2]] = left
            self.pump.unwatch(got[0])
            got[0].close()

    def close_all(self) -> None:
        for key in list(self.by_key):
            self.close(key)

    def _watch(self, key, link: TcpLink, read: bool) -> None:
        self.pump.interest(link, lambda: self._read(key), lambda: self._write(key), read, link.wants_write)

    def _write(self, key) -> None:
        """Write what is queued; once all is written, our side shut (the client reads EOF after
        AUTH_FAILED, as from the close it got before)."""
        got = self.by_key.get(key)
        if got is None:
            return
        link = got[0]
        try:
            if link.flush():
                if got[3]:
                    self.close(key)         # all written, the client's side already done: as 2.6
                    return
                link.t.shutdown_write()
        except (ConnectionError, OSError):
            self.close(key)                 # the client is gone: nothing more to deliver
            return
        self._watch(key, link, got[1] > 0)

    def _read(self, key) -> None:
        """The client's bytes, thrown away; its close (or a reset) ends the wait."""
        got = self.by_key.get(key)
        if got is None:
            return
        link = got[0]
        try:
            data = link.t.recv()
        except PeerClosed:
            if not link.wants_write:
                self.close(key)
                return
            # Its FIN with our refusal still queued (its window full): a client may half-close
            # and read on. Written first, then closed (_write), within the hold -- as 2.6, which
            # does not read a connection while its output waits (mtcp.c: EVENT_WRITE only while
            # tcp_link_out_deferred), so it meets the FIN only once all is written (review47e).
            got[1], got[3] = 0, True
            self._watch(key, link, False)
            return
        except (ConnectionError, OSError):
            self.close(key)
            return
        if data:
            got[1] -= len(data)
            self.count(DISCARDED, len(data))
            if got[1] <= 0:
                self._watch(key, link, False)
