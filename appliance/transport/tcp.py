"""TCP transport: a non-blocking stream with a bounded write queue, and a listener for servers.

Framing lives in openvpn/framing.py; this module only moves bytes. EOF or a reset surfaces as
ConnectionError so the caller can restart (client) or drop that one client (server).
"""
from __future__ import annotations

import socket
from collections import deque

MAX_QUEUE = 8 << 20


class TcpTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.queue: deque = deque()
        self.queued = 0
        self.stats = {"dropped": 0}

    @classmethod
    def connect(cls, addr: tuple[str, int], timeout: float) -> "TcpTransport":
        s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(addr)
        except OSError:
            s.close()
            raise
        return cls(s)

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self) -> bytes:
        try:
            data = self.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return b""
        if not data:
            raise ConnectionError("connection closed by peer")
        return data

    def send(self, data: bytes) -> None:
        if not self.queue:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            if n == len(data):
                return
            data = data[n:]
        if self.queued + len(data) > MAX_QUEUE:
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
            self.queued -= n
            if n < len(data):
                self.queue[0] = data[n:]
                return False
            self.queue.popleft()
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class TcpListener:
    def __init__(self, addr: tuple[str, int], backlog: int = 128) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(addr)
        self.sock.listen(backlog)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[TcpTransport, tuple]:
        s, peer = self.sock.accept()
        return TcpTransport(s), peer

    def close(self) -> None:
        self.sock.close()
