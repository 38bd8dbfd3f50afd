"""One link to a peer, UDP or TCP, as whole OpenVPN packets in and out.

Why: the pump should not care whether packets arrive as datagrams or inside a TCP stream; TCP's
2-byte length framing is applied and removed here (StreamFramer). A stream whose framing breaks
(a zero-length or oversized frame) is as dead as a reset one: both surface as ConnectionError, so
the pump restarts (client) or drops that one client (server).
"""
from __future__ import annotations

import struct
from collections import deque

from ..openvpn.errors import BadPacket
from ..openvpn.framing import StreamFramer
from ..openvpn.opcodes import Op

_DATA_OPS = (int(Op.DATA_V1), int(Op.DATA_V2))

_pack_len = struct.Struct("!H").pack


class UdpLink:
    """A connected datagram port (the client's): packets to and from its one peer."""

    def __init__(self, transport, addr: tuple | None = None) -> None:
        self.t = transport
        self.addr = addr

    def fileno(self) -> int:
        return self.t.fileno()

    def recv_packets(self, limit: int = 64) -> list:
        return self.t.recv_payloads(limit)

    @property
    def has_pending(self) -> bool:
        """Datagrams read past the last call's limit wait for the next (a GRO run longer than the
        transport expected: UdpTransport._spill)."""
        return self.t.has_spill

    wants_write = False              # a datagram socket queues nothing it sends (a plain attribute: read per wake-up)

    def local_address(self) -> str | None:
        """The address our datagrams leave from (fixed once connected); None if unknown."""
        return _local_address(self.t.sock)

    def send_packets(self, packets: list) -> None:
        if packets:
            self.t.send_batch(packets, self.addr)

    def flush(self) -> bool:
        return True

    @property
    def errors(self) -> dict[str, int]:
        return self.t.errors

    def close(self) -> None:
        self.t.close()


def _local_address(sock) -> str | None:
    try:
        a = sock.getsockname()[0]
    except (OSError, AttributeError, IndexError, TypeError):
        return None
    return a if isinstance(a, str) and a not in ("0.0.0.0", "::") else None


class TcpLink:
    """A stream port with OpenVPN's TCP framing."""

    def __init__(self, transport) -> None:
        self.t = transport
        self.framer = StreamFramer()
        self.errors: dict[str, int] = {}
        self.pending: deque = deque()      # frames read but not yet handed out

    def fileno(self) -> int:
        return self.t.fileno()

    def recv_packets(self, limit: int = 64) -> list:
        """At most `limit` packets: one recv may hold thousands of tiny frames, and one peer must
        not have a whole wake-up. `has_pending` says when to come back without waiting for the
        socket (nothing more is read from it until the pending frames are handed out, so a fast
        sender meets TCP's own backpressure)."""
        pending = self.pending
        if not pending:
            data = self.t.recv()   # raises ConnectionError on EOF or reset
            if not data:
                return []
            try:
                pending.extend(self.framer.feed(data))
            except BadPacket as e:
                raise ConnectionError(f"broken stream: {e.reason}") from e
        n = min(limit, len(pending))
        return [pending.popleft() for _ in range(n)]

    def feed(self, data: bytes) -> None:
        """Stream bytes someone read first (port-share's look at a connection's start), framed as
        if read here; ConnectionError if they break the framing."""
        try:
            self.pending.extend(self.framer.feed(data))
        except BadPacket as e:
            raise ConnectionError(f"broken stream: {e.reason}") from e

    @property
    def has_pending(self) -> bool:
        return bool(self.pending)

    def send_packets(self, packets: list) -> None:
        """Frame and queue; ConnectionError when the connection refuses the write. Lengths and
        packets are joined once (one copy of each packet, not two), in runs of data packets
        (which a full queue may drop) and control packets (which it keeps: transport/tcp.py
        CONTROL_ROOM), in their order."""
        if not packets:
            return
        parts: list = []
        add = parts.append
        keep = False
        for p in packets:
            n = len(p)
            if 0 < n <= 0xFFFF:
                control = (p[0] >> 3) not in _DATA_OPS
                if control != keep and parts:
                    self.t.send(b"".join(parts), keep)
                    parts.clear()
                keep = control
                add(_pack_len(n))
                add(p)
            else:
                self.errors["unframeable packet"] = self.errors.get("unframeable packet", 0) + 1
        if parts:
            self.t.send(b"".join(parts), keep)

    @property
    def wants_write(self) -> bool:
        return self.t.wants_write

    def flush(self) -> bool:
        return self.t.flush()

    def local_address(self) -> str | None:
        """The address the stream's segments leave from; None if unknown."""
        return _local_address(self.t.sock)

    def close(self) -> None:
        self.t.close()
