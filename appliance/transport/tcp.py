"""TCP transport: a non-blocking stream with a bounded write queue, and a listener for servers.

Framing lives in openvpn/framing.py; this module only moves bytes. EOF, a reset, or any write the
kernel refuses (EPIPE, ECONNRESET, EPERM from a firewall, ...) surfaces as ConnectionError, which
ends that one connection: the caller restarts (client) or drops that one client (server). The
listener raises PortGone only when its own socket is gone.
"""
from __future__ import annotations

import errno
import os
import socket
from collections import deque

from ..ioerrors import PortGone
from .recvbuf import recv_bytes

MAX_QUEUE = 256 << 10      # per connection, beyond the socket buffer (OpenVPN: tcp-queue-limit 64 packets)
# Room beyond MAX_QUEUE for writes that must not be dropped (`keep`: control packets). Our control
# channel does not retransmit over TCP, so a dropped one is lost for good; what it sends is bounded
# by its reliability window (6 messages of ~1.2 KB per key state) plus ACKs. A peer that stops
# reading yet keeps sending control packets (each one acked) meets this limit, and only then
# loses control packets too -- its own session's loss.
CONTROL_ROOM = 64 << 10


class PeerClosed(ConnectionError):
    """The peer's FIN (EOF), as against a reset or a failed receive: what we still have queued
    can be written (its side may read on after its shutdown(SHUT_WR))."""


class TcpTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.queue: deque = deque()
        self.queued = 0
        self.stats = {"dropped": 0}
        self.connecting = False          # a non-blocking connect still under way

    @classmethod
    def connect(cls, addr: tuple[str, int], sock: socket.socket | None = None) -> "TcpTransport":
        """Start a non-blocking connect: the caller waits for writability (in its event loop, so
        signals and timers keep working), then asks connect_error(). `sock`: a socket made (and
        its options set) by the caller, not yet connected."""
        s = sock if sock is not None else socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET,
                                                        socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY):
            s.close()
            raise OSError(err, os.strerror(err))
        t = cls(s)
        t.connecting = err != 0
        return t

    def connect_error(self) -> int:
        """After writability: 0 once connected, else the errno the connect failed with."""
        self.connecting = False
        return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        try:
            data = recv_bytes(self.sock, 262144)    # not a 256 KiB block asked of malloc per read
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as e:
            raise ConnectionError(f"receive failed: {e}") from e
        if not data:
            raise PeerClosed("connection closed by peer")
        return data

    def send(self, data: bytes, keep: bool = False) -> None:
        """Write, or queue what the socket does not take. A write that finds the queue full is
        dropped whole (counted) -- unless `keep` (control packets), which may use CONTROL_ROOM
        more: dropping a control packet cost the session (see CONTROL_ROOM)."""
        if not self.queue:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                raise ConnectionError(f"send failed: {e}") from e
            if n == len(data):
                return
            data = data[n:]
        if self.queued + len(data) > MAX_QUEUE + (CONTROL_ROOM if keep else 0):
            # A stalled peer: drop whole writes rather than grow without bound. Dropping part of
            # a frame would break the stream, so `data` is only ever whole frames or a tail we keep.
            if self.queue:
                self.stats["dropped"] += 1
                return
        self.queue.append(data)
        self.queued += len(data)

    @property
    def wants_write(self) -> bool:
        return bool(self.queue)

    def flush(self) -> bool:
        while self.queue:
            data = self.queue[0]
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as e:
                raise ConnectionError(f"send failed: {e}") from e
            self.queued -= n
            if n < len(data):
                self.queue[0] = data[n:]
                return False
            self.queue.popleft()
        return True

    def shutdown_write(self) -> None:
        """Our side done (FIN after what was sent); the peer's bytes may still be read. OSError
        (the peer reset the connection meanwhile) for the caller."""
        self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class TcpListener:
    def __init__(self, addr: tuple[str, int], backlog: int = 128, sock=None) -> None:
        # `sock`: a socket made elsewhere (lab/fakes.py passes an in-memory one).
        self.sock = sock if sock is not None else socket.socket(
            socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(backlog)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[TcpTransport, tuple]:
        """One waiting connection; BlockingIOError when none, OSError (EMFILE, ECONNABORTED, ...)
        for a failed accept, PortGone when the listening socket itself is gone."""
        try:
            s, peer = self.sock.accept()
        except OSError as e:
            if e.errno in (errno.EBADF, errno.ENOTSOCK, errno.EINVAL):
                raise PortGone(f"TCP listener: accept failed: {e}") from e
            raise
        try:
            return TcpTransport(s), peer
        except OSError:
            s.close()    # reset before we could set it up: nothing to serve
            raise

    def close(self) -> None:
        self.sock.close()
