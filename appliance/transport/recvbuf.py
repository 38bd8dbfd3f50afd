"""Reading a stream socket without asking the allocator for the largest read each time.

Why: `sock.recv(N)` makes an N-byte bytes object, reads into it, then shrinks it to what came.
For the server's TCP clients (N = 256 KiB) and management connections (64 KiB), most reads bring
a packet or a line, so every read asked glibc's malloc for a large block that lived a few
microseconds. Once glibc's mmap threshold has risen (it follows the largest block freed), those
blocks come from the main heap, and when no free run of that size is left between what lives
there, the heap is extended (brk) -- seen in soak44 with `strace -k -e brk` on the server: the
only brk after start-up was sock_recv's. (The heap crept there, +0.56 MB in 17 minutes with
malloc's bytes in use flat; a brk names the allocation that found the heap full, not all that
fills it: lab/reliability/RESULTS.md, soak44.) Here one scratch buffer per thread takes every
read and the bytes object made is the size of what came: no large block asked for per read.
Costs a copy of what was read (small beside the decryption that follows), and saves the
mmap/munmap pair a 256 KiB block costs while the threshold is still at its default.
"""
from __future__ import annotations

import threading

SCRATCH = 256 << 10         # the largest read taken here (TCP's; management reads 64 KiB)

_local = threading.local()


def recv_bytes(sock, limit: int) -> bytes:  # noqa: ANN001 - a socket or the lab's in-memory one
    """`sock.recv(limit)` (same result, same exceptions: BlockingIOError, OSError; b"" at EOF),
    read through this thread's scratch buffer. `limit` at most SCRATCH."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(SCRATCH))
    n = sock.recv_into(buf[:limit])
    return bytes(buf[:n])
