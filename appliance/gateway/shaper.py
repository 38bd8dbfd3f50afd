"""`shaper N`: at most N bytes a second of what a client (or p2p peer) writes to the link, as
OpenVPN 2.6's traffic shaper (shaper.h): each write is charged its bytes plus the outer IP and
UDP/TCP headers (at least 100), and the TUN is not read again until that time has passed.

Why it stops reading the TUN instead of holding packets: 2.6 does the same (forward.c io_wait:
no TUN read while the shaper says wait), so what a sender pushes beyond the rate waits in the
kernel's TUN queue, bounded by its length, and is dropped there -- no queue of ours to grow, and
TCP inside the tunnel sees the loss and slows down. Control packets and keepalive pings are never
held (they are charged, so data waits a little longer after them): the tunnel stays alive under
a saturating sender, where 2.6 would queue them behind the data packet waiting its turn.
"""
from __future__ import annotations

MIN_CHARGE = 100          # 2.6 charges a write at least this many bytes (shaper_wrote_bytes)
MAX_WAIT = 10.0           # 2.6's SHAPER_MAX_TIMEOUT: no single write costs more
RESUME_AFTER = 0.001      # 2.6 writes at once when less than 1 ms is left (io_wait)
# A wake-up this late (the loop's timer resolution, a busy turn) is not lost: the next write is
# charged from when the link was due free, not from now. Without it each packet paid the loop's
# lateness on top of its cost -- one packet per read (TunDevice.set_tso) at `shaper 1000000` gave
# ~0.53 MB/s. Idle longer than this, the link starts afresh from now: no burst credit is saved up.
LATE_KEPT = 0.01


def header_bytes(tcp: bool, ipv6: bool) -> int:
    """The outer headers one link write costs, as 2.6's datagram_overhead counts them."""
    return (60 if tcp else 48) if ipv6 else (40 if tcp else 28)


class Shaper:
    """Time-based token bucket without burst: `wrote` pushes the time the link is free again
    forward by the cost of what was written; `wait` is what is left of it. (A write up to
    LATE_KEPT late catches up that lateness, no more: at most 10 ms of the rate at once.)"""

    def __init__(self, rate: int) -> None:
        if rate <= 0:                 # (the config keeps it to 2.6's range: d_profile.py)
            raise ValueError(f"shaper rate {rate}")
        self.rate = rate
        self.free_at = float("-inf")

    def wrote(self, packets: list, headers: int, now: float) -> None:
        """Each packet is one write for 2.6, its cost capped at MAX_WAIT on its own (shaper_wrote_bytes):
        a TUN read can bring the ~45 segments of a TCP super-packet (TSO), and capping their total
        at 10 s let a low rate be exceeded many times over (review42). What is owed beyond this
        write's own cost stays capped at MAX_WAIT ahead, as before: control packets and pings are
        charged without waiting, and however many there are the TUN is judged again within 10 s
        of the last one (the data path itself writes only once the link is free). A write up to
        LATE_KEPT after the link was due free is charged from that time (the lateness was the
        loop's, not the link's)."""
        rate = self.rate
        cost = sum(min(max(len(p) + headers, MIN_CHARGE) / rate, MAX_WAIT) for p in packets)
        start = self.free_at if self.free_at >= now - LATE_KEPT else now
        self.free_at = min(start + cost, now + max(cost, MAX_WAIT))

    def wait(self, now: float) -> float:
        """Seconds until the TUN may be read again; 0 when it may now."""
        left = self.free_at - now
        return left if left >= RESUME_AFTER else 0.0

