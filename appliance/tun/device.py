"""The TUN device: non-blocking, batched reads and writes, with virtio-net offload when offered.

With IFF_VNET_HDR + TUNSETOFFLOAD(CSUM|TSO4|TSO6) one read can return a TCP super-packet, which
`read_batch` cuts into ordinary IP packets (tun/offload.py) before they are sealed one by one.
Whether to ask for that depends on who cuts (`tso=None`, the default, decides by
offload.SPLIT_COMPILED): in Python each segment costs ~5 us (the ones'-complement sum alone
~2.8 us per 1400 bytes), more than a read of one packet the kernel already cut and checksummed
(~1.5 us), so TSO stays off; the compiled split (appliance/native/gso.c) cuts a 64 KB
super-packet into 49 segments in ~8.5 us, so one read per 64 KB wins and TSO is on -- measured
with lab/bench_tunnel.py's CPU-per-MB figures; see README, Performance.
Writes go the other way: consecutive TCP segments of one flow are merged into one GSO
super-packet (offload.GroBatch) so the kernel's receive path runs once per 64 KB instead of
once per segment; anything else is written as it is behind a zeroed virtio header.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
import time

from ..anonbuf import anon_buffer
from ..ioerrors import PortGone
from . import offload
from .flow_owner import FlowOwners

log = logging.getLogger("vpn-appliance")

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
SIOCGIFADDR = 0x8915
LOCAL_REFRESH = 1.0    # seconds between looks at the TUN's own IPv4 address (offload.GroBatch.local)
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 0x01, 0x02, 0x04, 0x08
TSO_FLAGS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
READ_SIZE = 65535 + offload.VNET_HDR_LEN
HEADROOM = 64          # room before each read packet for the wire header, so sealing can go in place
POOL_START = 4         # read buffers made with the device (read_batch adds more as batches grow)
MAX_READ = 65535       # the largest read: a TSO super-packet, or an IP packet at the largest MTU
FRAME_EXTRA = 18       # a TAP frame beyond its MTU: the Ethernet header and one VLAN tag


def refuse_router_adverts(name: str) -> None:
    """No IPv6 router advertisements on the TUN device (accept_ra 0), before its link comes up.
    Why: the kernel gives a TUN device a link-local address and, by default, takes RAs on it: a
    peer sending one through the tunnel gave this host an address from its prefix and a default
    route into the tunnel (and a server's host, when a client sent it), none of which was pushed
    or configured. What the tunnel's IPv6 is comes from ifconfig-ipv6 and routes alone, as in
    OpenVPN. A host without IPv6 has no such file: nothing to refuse."""
    try:
        with open(f"/proc/sys/net/ipv6/conf/{name}/accept_ra", "w") as f:
            f.write("0")
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("TUN %s: cannot turn off IPv6 router advertisements (%s); a peer could send some", name, e)


class TunDevice:
    def __init__(self, name: str = "tun%d", vnet_hdr: bool = True, mtu: int = 1500, tso: bool | None = None,
                 tap: bool = False) -> None:
        """`tap`: a layer-2 TAP device (`dev tap`), whose reads and writes are whole Ethernet frames.
        It runs without the virtio header: the offloads here (TSO splitting, GRO merging, the
        flow-owner check) parse IP packets at offset 0, and a frame's IP header is not there;
        the kernel segments and checksums what it hands us, and takes our frames one by one."""
        if tso is None:
            tso = offload.SPLIT_COMPILED     # the module docstring says why
        if tap:
            vnet_hdr = False
        self.tap = tap
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._mtu = mtu
        self.vnet_hdr = False
        self.offload_note = ""
        flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        try:
            ifr = fcntl.ioctl(self.fd, TUNSETIFF, struct.pack("16sH", name.encode(), flags))
        except OSError:
            os.close(self.fd)
            raise
        self.name = ifr[:16].rstrip(b"\0").decode()
        refuse_router_adverts(self.name)
        self.tso = False                # super-packets offered now (set_tso turns them off and back)
        self._tso_at_open = False
        if vnet_hdr:
            try:
                # tso off: offer nothing, so the kernel segments and checksums what we read; our
                # GSO writes (the virtio header we send) do not depend on these flags.
                fcntl.ioctl(self.fd, TUNSETOFFLOAD, TSO_FLAGS if tso else 0)
                self.tso = self._tso_at_open = bool(tso)
                self.vnet_hdr = True
            except OSError as e:
                # The device was created with a vnet header; without offload the header stays
                # (always GSO_NONE), so keep parsing it but note why offload is off.
                self.vnet_hdr = True
                self.offload_note = f"TUNSETOFFLOAD refused: {e}"
                log.info("TUN offload refused (%s); reading one packet per call", e)
        self.hlen = offload.VNET_HDR_LEN if self.vnet_hdr else 0
        # GSO writes only where the kernel took our offload flags (it then also accepts them back).
        self.gro = self.vnet_hdr and not self.offload_note
        self._batch = offload.GroBatch()
        # Merging segments to our own address for the kernel to verify (offload.py, local
        # delivery), only for flows a socket of this host owns (flow_owner.py): a masqueraded
        # reply (router mode) has our address as its destination but is then forwarded, and a
        # forwarded GSO packet without CHECKSUM_PARTIAL makes the kernel warn and re-checksum it.
        self.local_gro = True
        self.owners = FlowOwners()
        self._batch.owner = self.owners.owned
        self._local_at = 0.0
        # For the TUN's own address (_refresh_local), opened with the device like the flow-owner socket.
        self._ifsock: socket.socket | None = None
        try:
            self._ifsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError:
            pass
        self._pending: list = []
        # read_packets' buffer (tests' reads; read_batch is the gateways'): anonymous pages, resident
        # only once written, as the spill buffer below -- a zero-filled bytearray is 64 KiB at once.
        self.buf = anon_buffer(READ_SIZE)
        self.view = memoryview(self.buf)
        # read_batch's pool: one buffer per packet of a batch, HEADROOM bytes before the packet.
        # Each entry: (the buffer, the iovec list readv fills), built once, not per read. The
        # first few are made with the device (a client opens it ahead of need): zeroing 64 KB
        # buffers at the first read cost ~0.1 ms on the way to a client's first packet.
        self._init_pool()
        for _ in range(POOL_START):
            self._pool_add()
        self.stats = {"read": 0, "written": 0, "write_dropped": 0, "super_packets": 0, "segments": 0,
                      "gro_writes": 0, "gro_segments": 0, "gro_bad_checksums": 0, "offload_refused": 0,
                      "spilled": 0}

    def _init_pool(self) -> None:
        """read_batch's buffers. Each pool buffer holds one packet of the device's MTU (a frame,
        for TAP) behind HEADROOM; what a read brings beyond that lands in one spill buffer of the
        device, shared by all its pool buffers (the same readv: no second read, no truncation).
        Why not 64 KiB each, as before: the pool grows to a batch's packet count (64), so
        64 KiB buffers held ~4.2 MB for packets of 1,500 bytes. Only a TSO super-packet (TSO
        offered) or a packet over the MTU we were told (an MTU raised behind our back) spills:
        it is joined into the spill buffer (one MTU's copy) and split, or copied out whole."""
        self._hdr = memoryview(bytearray(offload.VNET_HDR_LEN))
        self._pool = []
        self._spill = memoryview(anon_buffer(MAX_READ))     # resident as far as spills have reached
        self._size = self._pool_size()

    def _pool_size(self) -> int:
        return min(MAX_READ, max(576, self._mtu + (FRAME_EXTRA if self.tap else 0)))

    @property
    def mtu(self) -> int:
        return self._mtu

    @mtu.setter
    def mtu(self, mtu: int) -> None:
        """A new MTU (a pushed tun-mtu): the pool starts over with POOL_START buffers of its size,
        so packets of the new MTU read without spilling, and read_batch adds more as batches grow.
        Why not resize each buffer as read_batch next takes it (soak45's first version): the
        buffers beyond what later batches reach stayed at the old size (a pool grown to 64 at
        tun-mtu 9000 kept ~580 kB after a push of 1500), and the hot loop paid a size check per
        packet. Views of the old buffers a caller still holds keep them alive until dropped."""
        self._mtu = mtu
        size = self._pool_size()
        if size != self._size:
            self._size = size
            self._pool.clear()      # in place: read_batch keeps no reference across calls anyway
            for _ in range(POOL_START):
                self._pool_add()

    def fileno(self) -> int:
        return self.fd

    def read_packets(self, max_packets: int = 64) -> list:
        """Read until EAGAIN or `max_packets`; returns IP packets (bytes-like, owned by the caller)."""
        out: list = []
        fd, view, hlen = self.fd, self.view, self.hlen
        readv = os.readv
        calls = 0
        while len(out) < max_packets and calls < 2 * max_packets:
            calls += 1
            try:
                n = readv(fd, [view])
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if n <= hlen:
                continue
            if not hlen:
                out.append(bytearray(view[:n]))  # writable: MSS clamping edits in place
                continue
            flags, gso_type, _hl, gso_size, cstart, coff = offload.parse_vnet_hdr(view)
            try:
                if gso_type == offload.GSO_NONE:
                    pkt = bytearray(view[hlen:n])
                    if flags & offload.F_NEEDS_CSUM:
                        offload.complete_checksum(pkt, cstart, coff)
                    out.append(pkt)
                else:
                    segs = offload.gso_split(view[hlen:n], gso_type, gso_size, cstart)
                    self.stats["super_packets"] += 1
                    self.stats["segments"] += len(segs)
                    out.extend(segs)
            except ValueError:
                self.stats["offload_refused"] += 1     # see read_batch
        self.stats["read"] += len(out)
        return out

    def set_tso(self, on: bool) -> None:
        """TCP super-packets (TSO) from the kernel off, or back on where the device was opened
        with them. Off while `shaper` is in force (gateway/client.py): one read is then one IP
        packet, as OpenVPN 2.6 reads its TUN (no offloads), so the shaper spaces each packet --
        with TSO one read brought up to ~45 segments that left back to back (iperf3 at `shaper
        200000`: 38 KB in one 10 ms against Debian's client's 3 KB). The kernel segments what
        it queues from then on; a super-packet already queued is still split in read_batch."""
        want = on and self._tso_at_open
        if want == self.tso or self.offload_note:
            return
        try:
            fcntl.ioctl(self.fd, TUNSETOFFLOAD, TSO_FLAGS if want else 0)
        except OSError as e:            # (the device went away: its read says so next)
            log.info("TUN %s: offload change refused (%s)", self.name, e)
            return
        self.tso = want

    def read_batch(self, max_packets: int = 64) -> list:
        """Read until EAGAIN or `max_packets` into pooled buffers; returns writable views of the IP
        packets (HEADROOM bytes free in front of each), valid until the next read_batch. A failing
        device (gone, detached) raises PortGone: that is our resource, not a peer's doing.
        Segments cut from a TSO super-packet are bytearrays of their own, without HEADROOM: nothing
        seals in place (DataKey.seal returns fresh bytes), so room in front would save no copy."""
        out: list = []
        fd, hlen, pool, size = self.fd, self.hlen, self._pool, self._size
        hdr = self._hdr if hlen else None
        readv = os.readv
        i = 0
        calls = 0
        while len(out) < max_packets and calls < 2 * max_packets:
            calls += 1                  # empty or header-only reads count too: a batch is bounded
            if i == len(pool):
                self._pool_add()
            buf, iov = pool[i]
            try:
                n = readv(fd, iov)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as e:
                raise PortGone(f"TUN {self.name}: read failed: {e}") from e
            if n <= hlen:
                continue
            n -= hlen
            if n > size:
                # Beyond the pool buffer: the rest is in the spill buffer; join it there.
                spill = self._spill
                spill[:size] = buf[HEADROOM:HEADROOM + size]
                pkt = spill[:n]
                if not (hlen and hdr[1]):       # not a super-packet: a copy of its own
                    pkt = bytearray(pkt)        # (the next spill reuses the buffer)
                    self.stats["spilled"] += 1
            else:
                pkt = buf[HEADROOM:HEADROOM + n]
            # hdr[1]: gso_type, hdr[0] & 1: NEEDS_CSUM -- both 0 unless TSO/CSUM offload is on
            if hlen and (hdr[1] or hdr[0] & offload.F_NEEDS_CSUM):
                flags, gso_type, _hl, gso_size, cstart, coff = offload.parse_vnet_hdr(hdr)
                try:
                    if gso_type != offload.GSO_NONE:
                        segs = offload.gso_split(pkt, gso_type, gso_size, cstart)
                        self.stats["super_packets"] += 1
                        self.stats["segments"] += len(segs)
                        out.extend(segs)    # copies: this pool buffer is free for the next read
                        continue
                    if flags & offload.F_NEEDS_CSUM:
                        offload.complete_checksum(pkt, cstart, coff)
                except ValueError:
                    # Offsets that do not fit the packet (offload.py_gso_split lists the rules):
                    # never from a working kernel; dropped and counted rather than sent on as is.
                    self.stats["offload_refused"] += 1
                    continue
            out.append(pkt)
            i += 1
        self.stats["read"] += len(out)
        return out

    def _pool_add(self) -> None:
        """One more pool buffer: its packet part, then the spill buffer's rest up to MAX_READ in
        the same iovec list."""
        size = self._size
        b = memoryview(bytearray(HEADROOM + size))
        iov = [b[HEADROOM:], self._spill[size:]]
        self._pool.append((b, [self._hdr, *iov] if self.hlen else iov))

    def _refresh_local(self) -> None:
        """The TUN's own IPv4 address, at most once a LOCAL_REFRESH: segments to it are merged
        for the kernel to verify (offload.py, local delivery). None or an error: an empty set,
        so every segment is verified here as before."""
        now = time.monotonic()
        if now < self._local_at:
            return
        self._local_at = now + LOCAL_REFRESH
        local: frozenset = frozenset()
        try:
            if self._ifsock is None:
                raise OSError("no socket for SIOCGIFADDR")
            r = fcntl.ioctl(self._ifsock, SIOCGIFADDR, struct.pack("256s", self.name.encode()))
            local = frozenset((bytes(r[20:24]),))
        except OSError:
            pass                        # no IPv4 address (yet), or the device is going away
        self._batch.local = local

    def note_local(self, address: str) -> None:
        """The IPv4 address just put on the device (a client's push): what _refresh_local would
        ask the kernel for at the first packet in, which is the answer to the client's first
        packet through the tunnel. Told now, that ioctl is not on its way. A hint only: nothing
        is added or removed by it (helper net48 checked, for tunclose47's note), and on a device
        made beforehand that also holds a user's address, segments to that one are verified
        here until the next refresh asks the kernel again (SIOCGIFADDR: one address anyway)."""
        self._batch.local = frozenset((socket.inet_aton(address),))
        self._local_at = time.monotonic() + LOCAL_REFRESH

    def queue(self, pkt) -> None:
        """Queue one IP packet for the next flush (copied: callers pass reused buffers)."""
        if self.gro:
            if self.local_gro and not len(self._batch):
                self._refresh_local()
            self._batch.add(pkt)
        else:
            self._pending.append(bytes(pkt))

    def queue_many(self, pkts) -> None:
        """queue() of each packet of a batch (a link batch's plaintexts), without a call each."""
        if self.gro:
            if self.local_gro and not len(self._batch):
                self._refresh_local()
            add = self._batch.add
            for p in pkts:
                add(p)
        else:
            self._pending += map(bytes, pkts)

    def write_packets(self, packets) -> int:
        """Queue and flush; returns how many packets went in (merged segments count each)."""
        for p in packets:
            self.queue(p)
        return self.flush()

    def flush(self) -> int:
        """Write what was queued: merged super-packets with a GSO header, the rest one by one."""
        fd, stats = self.fd, self.stats
        written = 0
        if self._pending:
            pending, self._pending = self._pending, []
            if self.hlen:
                hdr, writev = offload.ZERO_VNET_HDR, os.writev
                for p in pending:
                    written += self._write_one(writev, fd, (hdr, p))
            else:
                write = os.write
                for p in pending:
                    written += self._write_one(write, fd, p)
        if len(self._batch):
            stats["gro_bad_checksums"] = self._batch.bad_checksums
            writev = os.writev
            for hdr, pkt, count in self._batch.take():
                if count == 1:              # most of what a sending client gets back: the ACKs
                    try:                    # _write_one written out: one call less per packet
                        writev(fd, (hdr, pkt))
                        written += 1
                    except OSError as e:
                        self._write_failed(e)
                    continue
                try:
                    writev(fd, (hdr, pkt))
                    written += count
                    stats["gro_writes"] += 1
                    stats["gro_segments"] += count
                except (BlockingIOError, InterruptedError):
                    stats["write_dropped"] += count
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise PortGone(f"TUN {self.name}: write failed: {e}") from e
                    # This kernel refuses our GSO writes: say so once, cut the super-packet back
                    # into its segments, and write one by one from now on.
                    log.info("TUN refused a GSO write (%s); writing packets one by one from now on", e)
                    self.gro = False
                    _f, gso_type, _h, gso_size, cstart, _o = offload.parse_vnet_hdr(hdr)
                    try:
                        segs = offload.gso_split(pkt, gso_type, gso_size, cstart)
                    except ValueError:          # not from GroBatch; counted, not raised
                        stats["write_dropped"] += count
                        continue
                    for seg in segs:
                        written += self._write_one(writev, fd, (offload.ZERO_VNET_HDR, seg))
        stats["written"] += written
        return written

    def _write_one(self, write, fd, arg) -> int:
        try:
            write(fd, arg)
            return 1
        except OSError as e:
            self._write_failed(e)
        return 0

    def _write_failed(self, e: OSError) -> None:
        """A packet the TUN did not take: counted and dropped, or PortGone for a device that is
        gone -- our resource, not the peer's doing."""
        if isinstance(e, (BlockingIOError, InterruptedError)) or e.errno in (
                errno.EINVAL, errno.ENOBUFS, errno.EIO, errno.EMSGSIZE):
            self.stats["write_dropped"] += 1      # a full queue, or e.g. a malformed inner packet
        else:
            raise PortGone(f"TUN {self.name}: write failed: {e}") from e

    def close(self) -> None:
        self.owners.close()
        if self._ifsock is not None:
            self._ifsock.close()
            self._ifsock = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
