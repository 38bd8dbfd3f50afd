"""Reading rtnetlink notifications as hints: the one loop of the address and route watchers.

Why one place: both watchers (tun/addr_watch.py, tun/route_watch.py) take a notification only as
a hint to re-read the kernel's state, trust only the kernel (sender port 0: only it can send to
an rtnetlink multicast group), count a lost batch (ENOBUFS: the socket's queue overflowed) as a
change, and read at most `limit` datagrams per wake-up so a flood cannot hold the loop.
"""
from __future__ import annotations

import errno
import socket
import struct
from typing import Callable

_NLMSGHDR = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_RECV = 65536


def read_hints(sock: socket.socket, wanted: tuple[int, ...], stats: dict[str, int], counter: str,
               limit: int, concerns: Callable[[int, bytes], bool] | None = None) -> tuple[bool, bool]:
    """(seen, pending): whether a message of a `wanted` type came from the kernel (or an overflow
    may have hidden one) in at most `limit` datagrams of the non-blocking `sock`, and whether
    that limit was reached with datagrams perhaps still queued. Each wanted message adds one to
    `stats[counter]`, each overflow one to `stats["overflows"]`. `concerns(type, message)` (the
    message with its header), when given, says which wanted messages count at all: the others
    add one to `stats["ignored"]` and are no hint (an overflow still is one)."""
    seen = False
    for _ in range(limit):
        try:
            data, (pid, _groups) = sock.recvfrom(_RECV)
        except (BlockingIOError, InterruptedError):
            return seen, False
        except OSError as e:
            if e.errno == errno.ENOBUFS:          # the kernel dropped messages for us
                stats["overflows"] += 1
                seen = True
                continue
            raise
        if pid != 0:
            continue                              # not the kernel
        off = 0
        while off + _NLMSGHDR.size <= len(data):
            n, mtype = _NLMSGHDR.unpack_from(data, off)[:2]
            if n < _NLMSGHDR.size:
                break
            if mtype in wanted:
                if concerns is None or concerns(mtype, data[off:off + n]):
                    stats[counter] += 1
                    seen = True
                else:
                    stats["ignored"] = stats.get("ignored", 0) + 1
            off += (n + 3) & ~3
    return seen, True
