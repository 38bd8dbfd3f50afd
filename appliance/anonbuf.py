"""Large read buffers that cost memory only where written: anonymous, private pages.

Why not a bytearray: a zero-filled bytearray is resident from its creation (64 KiB per TUN
device's spill buffer, per UDP socket's Python-receive buffer, most never written: soak45).
An anonymous mapping is resident only as far as reads reach into it.

Why private (MAP_PRIVATE), not Python's default for `mmap.mmap(-1, n)` (MAP_SHARED): a shared
mapping stays one memory with every process forked after it was made. The root helpers forked
after the TUN opens (host/unlink_at_exit.py for a management socket with `user`) then held a
live view of the spill buffer -- each TSO super-packet and over-MTU packet read afterwards, in
the clear (review46b). A private mapping gives a child a copy-on-write snapshot at the fork, as
the bytearrays before did, and nothing read after it.
"""
from __future__ import annotations

import mmap


def anon_buffer(size: int) -> mmap.mmap:
    """A writable buffer of `size` bytes, zero where never written, resident only where written,
    not shared with processes forked later."""
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
