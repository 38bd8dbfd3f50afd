"""Is a TCP flow addressed to this host really delivered to one of its sockets? (sock_diag, cached)

Why this exists: segments to the TUN's own IPv4 address are merged without being summed here, for
the kernel's TCP receive to verify (tun/offload.py, "local delivery"), which saves the ~2.8 us per
1400 bytes a Python checksum costs. That is only sound when the super-packet is delivered here: a
forwarded GSO packet without CHECKSUM_PARTIAL is re-checksummed by the kernel (laundering a segment
corrupted before the VPN) and warned about. "Addressed to our address" is not enough once NAT is
involved: in router mode (or with docker, libvirt, ... masquerading through the tunnel) replies
carry our address and are then forwarded to the host behind the NAT.

A socket of ours owning the exact 4-tuple in a data-carrying TCP state proves local delivery: the
connection tracker keeps tuples unique, so no NAT mapping can share that tuple while the socket (or
its TIME_WAIT) exists. The kernel answers the question with one inet_diag exact lookup (the same one
`ss` uses), made at most once per flow per `POSITIVE_TTL`/`NEGATIVE_TTL` and at most
`LOOKUPS_PER_S` times a second, so a peer sending to many made-up ports costs a bounded amount of
system calls. A flow whose socket is still in SYN_RECV is asked about again after `HANDSHAKE_TTL`,
not `NEGATIVE_TTL`: a TUN burst often holds the handshake's last ACK and the first data segments
together, so the data is looked at before the ACK is written and the socket exists; a 2 s "no"
then had every segment of a new connection summed here for its first 2 s (40% of a 5 s iperf3
run). When unsure -- no answer, an error, the rate spent, a kernel without inet_diag -- the
answer is "no", and the segments are verified here as before: only slower, never wrong.
"""
from __future__ import annotations

import logging
import socket
import struct
import time

log = logging.getLogger("vpn-appliance")

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NLMSG_HDR = struct.Struct("=IHHII")
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid: sport, dport
# (network order), src[16], dst[16], if, cookie[2].
REQ = struct.Struct("=BBBxI2s2s16s16sIII")
TCP_ESTABLISHED, TCP_SYN_RECV, TCP_FIN_WAIT1, TCP_FIN_WAIT2 = 1, 3, 4, 5
DATA_STATES = frozenset((TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2))
NOCOOKIE = 0xFFFFFFFF

POSITIVE_TTL = 10.0     # a closed socket's tuple stays unique for TIME_WAIT (60 s) and conntrack's 120 s
NEGATIVE_TTL = 2.0      # no socket of ours: a forwarded flow, or one not yet accepted
HANDSHAKE_TTL = 0.02    # our socket is in SYN_RECV: its handshake's last ACK is about to land
LOOKUPS_PER_S = 1000    # about 10 us each: at most ~1% of a core
MAX_ENTRIES = 4096


class FlowOwners:
    """`owned(addrs_ports)` for IPv4 TCP: the packet's source address, destination address,
    source port and destination port (12 bytes, as they sit in the headers)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.cache: dict[bytes, tuple[bool, float]] = {}
        self.disabled = ""
        # Opened now, not at the first lookup: a descriptor held for the device's life, not one
        # that appears mid-run (the soak test counts the server's descriptors).
        self.sock: socket.socket | None = self._open()
        self.seq = 0
        self.window_start = 0.0
        self.window_lookups = 0
        self.stats = {"lookups": 0, "owned": 0, "not_owned": 0, "rate_limited": 0, "errors": 0}

    def owned(self, addrs_ports: bytes) -> bool:
        now = self.clock()
        hit = self.cache.get(addrs_ports)
        if hit is not None and hit[1] > now:
            return hit[0]
        if self.disabled:
            return False
        if now - self.window_start >= 1.0:
            self.window_start, self.window_lookups = now, 0
        if self.window_lookups >= LOOKUPS_PER_S:
            self.stats["rate_limited"] += 1
            return False
        self.window_lookups += 1
        answer, ttl = self._lookup(addrs_ports)
        if len(self.cache) >= MAX_ENTRIES:
            self.cache = {k: v for k, v in self.cache.items() if v[1] > now}
            if len(self.cache) >= MAX_ENTRIES:
                self.cache.clear()
        self.cache[addrs_ports] = (answer, now + ttl)
        return answer

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.disabled = self.disabled or "closed"

    def _open(self) -> socket.socket | None:
        try:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
            s.setblocking(False)
            return s
        except OSError as e:
            self.disabled = f"no sock_diag socket: {e}"
            log.info("TUN local-delivery merging off: %s", self.disabled)
            return None

    def _lookup(self, ap: bytes) -> tuple[bool, float]:
        """One exact lookup; the socket's local side is the packet's destination.
        -> (owned, how long the answer holds)."""
        if self.sock is None:
            return False, NEGATIVE_TTL
        self.stats["lookups"] += 1
        src, dst, sport, dport = ap[0:4], ap[4:8], ap[8:10], ap[10:12]
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        body = REQ.pack(socket.AF_INET, socket.IPPROTO_TCP, 0, 0xFFFFFFFF, dport, sport, dst.ljust(16, b"\0"),
                        src.ljust(16, b"\0"), 0, NOCOOKIE, NOCOOKIE)
        try:
            self.sock.send(NLMSG_HDR.pack(NLMSG_HDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST,
                                          self.seq, 0) + body)
            while True:   # the kernel answers inside send; anything older than our seq is skipped
                reply = self.sock.recv(8192)
                if len(reply) < NLMSG_HDR.size:
                    raise OSError("short sock_diag reply")
                _ln, typ, _fl, seq, _pid = NLMSG_HDR.unpack_from(reply)
                if seq == self.seq:
                    break
        except (BlockingIOError, InterruptedError):
            self.stats["errors"] += 1
            return False, NEGATIVE_TTL
        except OSError as e:
            self.stats["errors"] += 1
            if self.stats["errors"] >= 16:
                self.disabled = f"sock_diag lookups failing: {e}"
                log.info("TUN local-delivery merging off: %s", self.disabled)
            return False, NEGATIVE_TTL
        state = self._state(reply[NLMSG_HDR.size:], src, dst, sport, dport) \
            if typ == SOCK_DIAG_BY_FAMILY else None
        ok = state in DATA_STATES
        self.stats["owned" if ok else "not_owned"] += 1
        if ok:
            return True, POSITIVE_TTL
        return False, HANDSHAKE_TTL if state == TCP_SYN_RECV else NEGATIVE_TTL

    @staticmethod
    def _state(msg: bytes, src: bytes, dst: bytes, sport: bytes, dport: bytes) -> int | None:
        """inet_diag_msg: family, state, timer, retrans, then the sockid. -> the state of the socket
        with this very tuple, None for anything else: the exact lookup also returns a listener or a
        TIME_WAIT socket for the port. Only a data-taking state (DATA_STATES) means ownership."""
        if len(msg) < 4 + 40 or msg[0] != socket.AF_INET:
            return None
        if msg[4:6] == dport and msg[6:8] == sport and msg[8:12] == dst and msg[24:28] == src:
            return msg[1]
        return None
