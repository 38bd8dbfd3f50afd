"""The wan-dhcp fuzz target: the WAN DHCP client's reading of replies (appliance/boot/dhcp_client.py
`Transaction` and `_replies` / `_wait`), datagrams from chosen sources through a fake socket that
runs the socket filter the client attaches, as the kernel would.

Why a target: the `dhcp` target stops at `parse_reply_untrusted`; what a rogue on the WAN segment
plays against is the transaction around it -- per-source counts of unusable replies, the sources
refused in the kernel (`only_ours`' classic BPF program, rebuilt at each refusal), the paced
reading of a flood -- and that path was only reached by hand-written unit tests.

Input: datagrams split at SEP. Each one's first byte picks its source (bits 0-3: one of 16 sources,
the real server's address and port 67 among them; bit 4: its port 68 instead of 67) and bits 5-7
how the rest is used: raw bytes; or a BOOTREPLY for our transaction and hardware address built
around the rest as options (yiaddr from its first 4 bytes), or the same for another xid / another
MAC; or (bit 7) the same datagram repeated rest[0] times (a flood: more than MAX_REPLIES datagrams
reach the paced reading, whose sleeps are counted, not slept). Then the real server sends an ACK.
The socket filters each datagram with the program attached when it arrived, arrival running 0, 3,
16 or 400 datagrams ahead of the reading (the first byte's bits 0-1): what a source sent before it
was refused is still queued, and _replies skips it itself.

Oracles: nothing escapes; at most MAX_BLOCKED sources refused, each after BLOCK_AFTER replies of
its own that were unusable; nothing read from a refused source is ever taken; every reply taken is
an ACK for our xid and MAC whose lease check passes; when the real server was not refused, a usable
reply is taken (the first usable one, its own ACK at the latest); the filter the client attached
accepts that ACK; the paced reading sleeps at most once per FLOOD_BURST datagrams read past
MAX_REPLIES.
"""
from __future__ import annotations

import ctypes
import socket
import struct

SEP = b"\xff\xfe"
MAC = b"\x52\x54\x00\x35\x00\x01"
XID = 0x35353535
SERVER = ("198.18.35.1", 67)
SOURCES = [SERVER] + [(f"198.18.35.{10 + i}", 67) for i in range(7)] + [(f"198.19.{i}.1", 67) for i in range(8)]
MAX_DATAGRAMS = 600
QUEUED = (0, 3, 16, 400)       # how far arrival runs ahead of the reading (the input's first byte, bits 0-1)


def _bpf_accepts(prog: list[tuple[int, int, int, int]], payload: bytes, source: tuple[str, int]) -> bool:
    """Run a classic BPF program of sockfilter's opcodes as the kernel runs a socket filter on a
    UDP datagram: offsets from the UDP header, SKF_NET_OFF ones from the IPv4 header."""
    from appliance.transport import sockfilter as sf
    ip = bytes(12) + socket.inet_aton(source[0]) + bytes(4)
    pkt = struct.pack("!HHHH", source[1], 68, 8 + len(payload), 0) + payload
    acc, pc = 0, 0
    for _ in range(4096):
        code, jt, jf, k = prog[pc]
        if code in (sf.LD_B, sf.LD_H, sf.LD_W):
            size = {sf.LD_B: 1, sf.LD_H: 2, sf.LD_W: 4}[code]
            off = k - (1 << 32) if k >= 1 << 31 else k
            buf, off = (ip, off + 0x100000) if off < 0 else (pkt, off)
            if off < 0 or off + size > len(buf):
                return False                # the kernel's out-of-bounds load ends the program: 0
            acc = int.from_bytes(buf[off:off + size], "big")
            pc += 1
        elif code == sf.JEQ:
            pc += 1 + (jt if acc == k else jf)
        elif code == sf.RET:
            return k != 0
        else:
            raise AssertionError(f"unknown BPF opcode {code:#x}")
    raise AssertionError("BPF program did not end")


class FilteringSocket:
    """What Transaction and _replies use of a socket: the datagrams in order, each passed through
    the filter attached last (SO_ATTACH_FILTER), then a timeout."""

    def __init__(self, datagrams: list[tuple[bytes, tuple[str, int]]], queued: int = 0) -> None:
        self.datagrams = datagrams
        self.queued = queued                 # datagrams that arrive ahead of the reading
        self.at = 0
        self.prog: list[tuple[int, int, int, int]] | None = None
        self.progs: list[tuple[int, list]] = []      # (datagrams read when attached, program)
        self.filtered_out = 0
        self.last: int | None = None         # index of the datagram returned last

    def setsockopt(self, level: int, opt: int, value) -> None:
        from appliance.transport import sockfilter as sf
        if level == socket.SOL_SOCKET and opt == sf.SO_ATTACH_FILTER:
            n, addr = struct.unpack("@HP", value)
            raw = ctypes.string_at(addr, 8 * n)
            self.prog = [struct.unpack_from("=HBBI", raw, 8 * i) for i in range(n)]
            self.progs.append((self.at, self.prog))

    def _filter_at_arrival(self, j: int) -> list | None:
        """The program in force when datagram j arrived: `queued` datagrams ahead of the reading,
        so a source refused now still has what it sent before in the queue (the kernel filters at
        arrival), which _replies must skip itself."""
        arrived = j - self.queued
        chosen = self.progs[0][1] if self.progs else None
        for at, prog in self.progs:
            if at <= arrived:
                chosen = prog
        return chosen

    def setblocking(self, _flag: bool) -> None:
        pass

    def settimeout(self, _t: float) -> None:
        pass

    def recv_into(self, _buf, _n: int = 0) -> int:
        raise BlockingIOError()              # nothing left from an earlier transaction

    def recvfrom(self, _n: int) -> tuple[bytes, tuple[str, int]]:
        while self.at < len(self.datagrams):
            data, source = self.datagrams[self.at]
            self.at += 1
            prog = self._filter_at_arrival(self.at - 1)
            if prog is not None and not _bpf_accepts(prog, data, source):
                self.filtered_out += 1
                continue
            self.last = self.at - 1
            return data, source
        raise socket.timeout()


def _reply(kind: int, xid: int, mac: bytes, yiaddr: bytes, opts: bytes) -> bytes:
    from appliance.boot import dhcp_client as dc
    body = bytearray(dc.build_message(kind, xid, mac)[:240])
    body[0] = 2
    body[16:20] = yiaddr.ljust(4, b"\0")[:4]
    return bytes(body) + opts


GOOD_ACK_OPTS = (bytes([53, 1, 5, 54, 4]) + socket.inet_aton(SERVER[0]) + bytes([1, 4, 255, 255, 255, 0, 3, 4])
                 + socket.inet_aton(SERVER[0]) + bytes([51, 4, 0, 0, 14, 16, 255]))
GOOD_YIADDR = socket.inet_aton("198.18.35.100")


def _datagrams(data: bytes) -> list[tuple[bytes, tuple[str, int]]]:
    out: list[tuple[bytes, tuple[str, int]]] = []
    for step in data.split(SEP)[:64]:
        if not step:
            continue
        sel, rest = step[0], step[1:]
        src = SOURCES[sel & 15]
        if sel & 16:
            src = (src[0], 68)
        how = (sel >> 5) & 3
        if how == 0:
            dgram = rest
        else:
            xid = XID if how != 2 else XID ^ 1
            mac = MAC if how != 3 else MAC[:5] + b"\x02"
            dgram = _reply(5, xid, mac, rest[:4], rest[4:])
        n = 1
        if sel & 128 and rest:
            n = 1 + rest[0] * 2
        out.extend([(dgram, src)] * min(n, MAX_DATAGRAMS - len(out)))
        if len(out) >= MAX_DATAGRAMS:
            break
    return out


class _NoSleep:
    """dhcp_client's `time` during one input: the clock as it is, sleeps counted and skipped."""

    def __init__(self, real) -> None:
        self.real, self.sleeps = real, 0
        self.monotonic = real.monotonic

    def sleep(self, _s: float) -> None:
        self.sleeps += 1


def make_wan_dhcp():
    import logging

    from appliance.boot import dhcp_client as dc
    logging.getLogger(dc.__name__).setLevel(logging.ERROR)
    real_time = dc.time

    def one(data: bytes) -> None:
        datagrams = _datagrams(data)
        datagrams.append((_reply(5, XID, MAC, GOOD_YIADDR, GOOD_ACK_OPTS), SERVER))
        queued = QUEUED[data[0] & 3] if data else 0
        s = FilteringSocket(datagrams, queued)
        drops = dc.Drops("wan0")
        tx = dc.Transaction(s, XID, MAC, drops)
        tx.begin()
        assert tx._filtered and s.prog is not None, "the transaction's filter was not attached"
        clock = dc.time = _NoSleep(real_time)
        taken: list[tuple[int, object]] = []
        try:
            for r, offer in dc._replies(tx, {dc.ACK}, 3600.0, (), SERVER[0]):
                assert s.last is not None
                taken.append((s.last, offer))
                assert r.kind == dc.ACK and r.xid == XID and r.chaddr == MAC, f"taken: {r!r}"
                assert offer is not None and not isinstance(dc.check_reply_untrusted(r), str)
                src = datagrams[s.last][1]
                assert src not in tx.refused, f"a reply taken from the refused source {src}"
        finally:
            dc.time = real_time
        assert len(tx.refused) <= dc.MAX_BLOCKED, f"{len(tx.refused)} sources refused"
        assert len(set(tx.refused)) == len(tx.refused), "a source refused twice"
        # Each refused source sent at least BLOCK_AFTER datagrams that were read and not taken.
        taken_idx = {i for i, _ in taken}
        for src in tx.refused:
            sent = sum(1 for i, (_d, x) in enumerate(datagrams) if x == src and i not in taken_idx)
            assert sent >= dc.BLOCK_AFTER, f"{src} refused after {sent} datagrams"
        if SERVER not in tx.refused:
            assert taken, "no reply taken though the real server's ACK came and it was never refused"
            assert _bpf_accepts(s.prog, datagrams[-1][0], SERVER), "the filter refuses the real server's ACK"
        reads = s.at - s.filtered_out
        assert clock.sleeps <= max(0, reads - dc.MAX_REPLIES) // dc.FLOOD_BURST + 1, \
            f"{clock.sleeps} paced sleeps for {reads} reads"
        # _wait takes the first usable reply of the same datagrams (a fresh transaction).
        s2 = FilteringSocket(datagrams, queued)
        tx2 = dc.Transaction(s2, XID, MAC, dc.Drops("wan0"))
        tx2.begin()
        dc.time = _NoSleep(real_time)
        try:
            got = dc._wait(tx2, {dc.ACK}, 3600.0, (), SERVER[0])
        finally:
            dc.time = real_time
        if taken:
            assert got is not None and got[1] == taken[0][1], "_wait took another reply than the first usable one"
    return one


def seeds() -> list[bytes]:
    junk_ack = bytes([53, 1, 5, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 1, 255])       # bad router
    rogue_ok = bytes([53, 1, 5, 54, 4, 198, 18, 35, 1, 1, 4, 255, 255, 255, 0, 51, 4, 0, 0, 0, 60, 255])
    nak = bytes([53, 1, 6, 54, 4, 198, 18, 35, 1, 255])
    y = socket.inet_aton("198.18.35.77")
    return [
        b"",
        SEP.join([bytes([0x21]) + y + junk_ack] * 5),                      # one rogue refused
        SEP.join([bytes([0x20 | i]) + y + junk_ack for i in range(1, 16)] * 4),   # 15 rogues, 8 refused
        SEP.join([bytes([0x20]) + y + junk_ack] * 5),                      # junk in the server's own name
        bytes([0xA3, 200]) + y + junk_ack,                                 # a flood from one source
        bytes([0xA4, 255]) + b"x" * 300,                                   # a flood of raw junk
        SEP.join([bytes([0x25]) + y + rogue_ok, bytes([0x20]) + y + nak]),  # a rogue's usable ACK first
        SEP.join([bytes([0x46]) + y + rogue_ok, bytes([0x67]) + y + rogue_ok, bytes([0x38]) + y + junk_ack]),
        bytes([0x00]) + bytes(240),
    ]
