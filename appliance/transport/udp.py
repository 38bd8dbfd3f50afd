"""UDP transport with batching: recv until EAGAIN (GRO when the kernel offers it), send runs of
equal-size datagrams with one sendmsg (UDP_SEGMENT / GSO). Falls back to plain calls once, saying
why, if the kernel refuses. Never blocks: a full socket buffer drops and counts.

Fault rule: a send the kernel refuses for one destination (its address invalid, such as source
port 0; a firewall rule answering EPERM; no route; ICMP unreachable) is that peer's problem: it is
dropped and counted in `errors` by errno name, and never raised. Only a socket of ours that is
gone (EBADF, ENOTSOCK) raises, as PortGone."""
from __future__ import annotations

import errno
import logging
import socket
import struct
import time

from .. import native
from ..anonbuf import anon_buffer
from ..ioerrors import PortGone

log = logging.getLogger("vpn-appliance")

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
MAX_GSO_SEGMENTS = 64
MAX_GSO_BYTES = 65000
RECV_SIZE = 65535
MAX_NO_GSO = 16                # destinations refusing GSO before we take it as the kernel's answer
# GSO refused for a destination (a segment over its path MTU) is tried again after this long: the
# kernel keeps a learned path MTU 600 s (net.ipv4.route.mtu_expires). Kept for good, anyone could
# turn GSO off server-wide with MAX_NO_GSO forged ICMP 'fragmentation needed' (atk41).
NO_GSO_FOR = 600.0
_GRO_CMSG = socket.CMSG_SPACE(4)    # room for UDP_GRO's segment size, asked of each receive
MANY_BATCH = 32                # datagrams per recv_many call (the compiled one takes at most 32)
# multihome (IP_PKTINFO / IPV6_PKTINFO; Linux values, Python's socket module lacks IP_PKTINFO)
SOL_IP = 0
IP_PKTINFO = 8
IPPROTO_IPV6 = 41
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
_LOCAL_CMSG = _GRO_CMSG + socket.CMSG_SPACE(20)   # GRO's size and an in6_pktinfo (in_pktinfo is 12 bytes)
MAX_PKTINFO_CACHE = 256        # local address -> its ready control message (the host's own addresses)
_udp = native.load("_udp")


def local_of(anc) -> str | None:
    """The local address a datagram was sent to, from recvmsg's ancillary data (multihome), as
    the address to answer from: IP_PKTINFO's ipi_spec_dst (for a datagram to a broadcast address,
    the kernel's choice of our unicast address, as OpenVPN uses it), or IPV6_PKTINFO's ipi6_addr
    (an IPv4 client of a dual-stack socket: ::ffff:a.b.c.d), a link-local one with `%ifindex`
    (its scope: without it the kernel could not send from it). None: none present or too short
    (never from the kernel). The compiled recv_from_many does the same in C."""
    for lvl, typ, data in anc or ():
        if lvl == SOL_IP and typ == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntop(socket.AF_INET, data[4:8])
        if lvl == IPPROTO_IPV6 and typ == IPV6_PKTINFO and len(data) >= 20:
            text = socket.inet_ntop(socket.AF_INET6, data[:16])
            if data[0] == 0xFE and data[1] & 0xC0 == 0x80:
                text += "%" + str(struct.unpack("=I", data[16:20])[0])
            return text
    return None


def pktinfo_cmsg(local: str) -> list:
    """sendmsg's control message that makes a datagram leave from `local` (local_of's text): for
    IPv4 an in_pktinfo with ipi_spec_dst set and no interface (the route picks it, as a reply
    without multihome would), for IPv6 (and ::ffff: on a dual-stack socket) an in6_pktinfo, its
    interface only for a link-local address. ValueError/OSError for text that is no address."""
    if ":" in local:
        host, _, scope = local.partition("%")
        idx = int(scope) if scope else 0
        if not 0 <= idx < 2**32:
            raise ValueError(f"bad scope in {local!r}")
        return [(IPPROTO_IPV6, IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", idx))]
    return [(SOL_IP, IP_PKTINFO, struct.pack("=i", 0) + socket.inet_pton(socket.AF_INET, local) + bytes(4))]


def _gro_seg(anc) -> int:
    """UDP_GRO's segment size from recvmsg's ancillary data, or 0: the run was not coalesced (or
    the value is unusable: shorter than 2 bytes, or 3; never from the kernel)."""
    for lvl, typ, data in anc or ():
        if lvl == SOL_UDP and typ == UDP_GRO:
            if len(data) == 2:
                return struct.unpack("=H", data)[0]
            return struct.unpack("=i", data[:4])[0] if len(data) >= 4 else 0
    return 0


# First bytes (opcode << 3 | key id) of OpenVPN's data packets, P_DATA_V1 (6) and P_DATA_V2 (9):
# 1 at those indexes. Only these share a GSO run; see _runs.
_DATA_FIRST = bytes(1 if b >> 3 in (6, 9) else 0 for b in range(256))


def _runs(datagrams: list):
    """(start, end, size) of each GSO run of `datagrams` (py_runs; compiled: `_udp.gso_runs`,
    one C loop instead of a Python step per datagram a client sends). The bounds are read at
    each call (lab.bench_tunnel --ours-gso sets MAX_GSO_SEGMENTS in a running program)."""
    if _udp is not None:
        return _udp.gso_runs(datagrams, MAX_GSO_SEGMENTS, MAX_GSO_BYTES)
    return py_runs(datagrams)


def py_runs(datagrams: list):
    """(start, end, size) of each GSO run of `datagrams`: the one cut of both send_batch paths
    (equal sizes, the last one may be shorter, bounded count and bytes; an empty datagram alone).

    Only data packets share a run: any other datagram (a control packet, an ACK, a hard reset)
    goes alone, and a run of data packets ends before it. Why: a GSO send is one skb until the
    kernel cuts it at the device, and everything before that -- the sending host's nftables or
    iptables (`udp dport 1194 @th,64,8 ...` opcode rules, hash limits on hard resets), tc filters,
    a packet socket, a veth carrying the batch whole into the next namespace -- judges all its
    datagrams by the first one's bytes. A control packet riding as the tail of a data run (or
    data behind a control packet at a run's head) fooled such rules and their counts; OpenVPN 2.6
    sends every packet with its own call. Data runs, where the batching pays, are kept whole."""
    i, n = 0, len(datagrams)
    data_first = _DATA_FIRST
    while i < n:
        first = datagrams[i]
        size = len(first)
        j = i + 1
        if size and data_first[first[0]]:
            total = size
            while j < n and j - i < MAX_GSO_SEGMENTS:
                d = datagrams[j]
                ln = len(d)
                # longer, empty (it would vanish into the run), not data, or past the byte bound
                if ln > size or ln == 0 or not data_first[d[0]] or total + ln > MAX_GSO_BYTES:
                    break
                total += ln
                j += 1
                if ln < size:
                    break
        yield i, j, size
        i = j


def py_recv_from_many(sock, rview: memoryview, max_msgs: int, gro: bool,
                      held: list | None = None, local: bool = False) -> list[tuple[bytes, int, object]]:
    """Up to `max_msgs` datagrams from `sock` without blocking: [(payload, GRO segment size or 0,
    source address as recvfrom gives it)]; with `local` (multihome), the address has the local
    address the datagram was sent to appended (local_of; None if the kernel gave none), so a
    client writing to another of our addresses is another peer to the engine, which moves it
    there only on an authenticated packet. Fewer than asked: the queue is empty, or an error ended
    the batch. Nothing read: the OSError of the first receive (BlockingIOError when empty). The
    pure-Python twin of the compiled `_udp.recv_from_many`, which does this in one recvmmsg. An
    error after some datagrams (an ICMP refusal that arrived meanwhile, say) is not lost: recvmmsg
    has the kernel keep it for the next call, this keeps it in `held` (the caller's, one per
    socket) and raises it at the next call, so both count it once."""
    if held:
        raise held.pop()
    out: list = []
    for _ in range(max_msgs):
        try:
            if local:
                n, anc, _flags, addr = sock.recvmsg_into([rview], _LOCAL_CMSG)
                addr = (*addr, local_of(anc))
            elif gro:
                n, anc, _flags, addr = sock.recvmsg_into([rview], _GRO_CMSG)
            else:
                (n, addr), anc = sock.recvfrom_into(rview), None
        except OSError as e:
            if out:
                if held is not None and not isinstance(e, (BlockingIOError, InterruptedError)):
                    held.append(e)      # as the kernel keeps any error but EAGAIN
                break
            raise
        out.append((rview[:n].tobytes(), _gro_seg(anc), addr))
    return out


def py_recv_many(sock, rview: memoryview, max_msgs: int, gro: bool,
                 held: list | None = None) -> list[tuple[bytes, int]]:
    """py_recv_from_many without the addresses: the twin of the compiled `_udp.recv_many`, for a
    connected socket (its datagrams all come from its peer)."""
    return [(d, seg) for d, seg, _a in py_recv_from_many(sock, rview, max_msgs, gro, held)]


class UdpTransport:
    def __init__(self, local: tuple[str, int] | None, remote: tuple[str, int] | None = None,
                 family: int = socket.AF_INET, gso: bool = True, gro: bool = True, sock=None,
                 multihome: bool = False) -> None:
        # `sock`: a socket made elsewhere (lab/fakes.py passes an in-memory one).
        # `multihome` (a server's unconnected socket): recv_batch's addresses carry the local
        # address each datagram was sent to as their last item, and send_batch sends from the
        # local address its address names (_send_batch_via); OSError if the kernel refuses.
        self.sock = sock if sock is not None else socket.socket(family, socket.SOCK_DGRAM)
        for opt, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
        if local is not None:
            # No SO_REUSEADDR (OpenVPN 2.6 sets it on TCP sockets only): on Linux two UDP sockets
            # that both set it share the port, so a second server started on the same port came
            # up and the kernel split the clients' datagrams between the two. A UDP port has no
            # TIME_WAIT to wait out: a restart binds it again at once without it.
            self.sock.bind(local)
        self.remote = remote
        if remote is not None:
            self.sock.connect(remote)
        self.sock.setblocking(False)
        self.gso = gso
        self.gro = False
        if gro:
            try:
                self.sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError as e:
                log.info("UDP GRO not available (%s): one datagram per receive", e)
        # py_recv_from_many's buffer: the compiled receive has its own, so on a real socket this
        # one is only written without the compiled module; anonymous pages, resident once
        # written (a zero-filled bytearray held 64 KiB per socket from its open).
        self.rbuf = anon_buffer(RECV_SIZE)
        self.rview = memoryview(self.rbuf)
        # The compiled recvmmsg reads the descriptor itself: only for a real, connected socket (an
        # in-memory one from lab/fakes.py goes through py_recv_many and its own methods).
        real = _udp is not None and type(self.sock) is socket.socket
        self._recv_many = _udp.recv_many if real and remote is not None else None
        self._recv_from_many = _udp.recv_from_many if real else None
        self.multihome = multihome
        self._pktinfo: dict[str, list] = {}       # local address -> its control message (multihome)
        if multihome:
            if remote is not None:
                raise ValueError("multihome is for an unconnected (server) socket")
            if family == socket.AF_INET6:
                self.sock.setsockopt(IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
            else:
                self.sock.setsockopt(SOL_IP, IP_PKTINFO, 1)
            if real:
                self._recv_from_many = lambda fd, n: _udp.recv_from_many(fd, n, True)
            # Only here: the plain path is left exactly as it is without the directive.
            self.send_batch = self._send_batch_via        # type: ignore[method-assign]
        self._held: list[OSError] = []        # py_recv_many's error after some datagrams, for its next call
        # Datagrams per message in recv_payloads' last call: each message may be a GRO run of up
        # to 64, so asking for 32 could take 2048 where the caller's limit said 64. Until a call
        # has shown otherwise, assume runs when GRO is on.
        self._run_len = 64 if self.gro else 1
        # Datagrams read past a call's limit (a GRO run longer than the estimate), handed out first
        # by the next call: no call returns more than its limit (has_spill: come back without
        # waiting for the socket).
        self._spill: list = []
        self.stats = {"sent": 0, "received": 0, "send_dropped": 0, "gso_sends": 0}
        self.errors: dict[str, int] = {}      # refused sends and receives, by errno name
        self.no_gso: dict = {}                # destination GSO was refused for -> when to try it again
        self._gso_back_at: float | None = None  # GSO off for everyone (MAX_NO_GSO refusals) until then
        self.clock = time.monotonic

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_batch(self, max_datagrams: int = 64) -> list[tuple[bytes, tuple]]:
        """Datagrams with their source addresses, at most `max_datagrams`, counted. Up to MANY_BATCH
        messages per system call: the compiled recv_from_many takes them in one recvmmsg (clients
        that send no GSO runs, OpenVPN's among them, otherwise cost a system call and a Python loop
        turn per datagram: 20-23% of our server's samples with OpenVPN's client uploading); its
        Python twin py_recv_from_many receives them one by one. A message may be a GRO-coalesced
        run of up to 64 datagrams: each call asks for as many messages as fit if each is as long a
        run as the last call's longest, and what a longer run brings past the limit waits in
        `_spill` for the next call (has_spill: the caller comes back without waiting for the
        socket). Before that, a sender whose single datagrams brought the estimate to 1 and who
        then sent MANY_BATCH runs of 64 had 2048 datagrams handled in one wake-up where the limit
        said 64 (helper srvreview; tests/unit/test_udp_from_attacks.py). An ICMP refusal is
        counted and the batch goes on; another receive error is counted and ends the batch; our
        socket gone raises PortGone."""
        out, self._spill = self._spill, []
        many = self._recv_from_many
        calls = 0
        while len(out) < max_datagrams and calls < 2 * max_datagrams:
            calls += 1                  # errors and empty reads count too: a batch is bounded
            # As many messages as fit in what is left if each is as long a run as last time (see
            # recv_payloads).
            want = max(1, min((max_datagrams - len(out)) // self._run_len, MANY_BATCH))
            try:
                # The descriptor afresh each time: closed meanwhile (by whatever Python code ran
                # between two calls), its number may already be another socket's.
                got = (many(self.sock.fileno(), want) if many is not None
                       else py_recv_from_many(self.sock, self.rview, want, self.gro, self._held, self.multihome))
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                self.stats["icmp_refused"] = self.stats.get("icmp_refused", 0) + 1
                continue  # ICMP port unreachable from a previous send: the peer is not there (yet)
            except OSError as e:
                self._error("receive", e)
                break
            longest = 1
            for data, seg, addr in got:
                n = len(data)
                # A GRO batch is cut into datagrams by slicing the bytes (the data channel wants
                # bytes anyway).
                if seg and seg < n:
                    run = [(data[i:i + seg], addr) for i in range(0, n, seg)]
                    out += run
                    longest = max(longest, len(run))
                else:
                    out.append((data, addr))
            if got:
                self._run_len = longest
            if len(got) < want:
                break                   # the queue is empty: no further call only to hear EAGAIN
        return self._hand_out(out, max_datagrams)

    def recv_payloads(self, max_datagrams: int = 64) -> list[bytes]:
        """A connected socket's datagrams, payloads only (they all come from its peer), at most
        `max_datagrams` (what a GRO run brings past it waits for the next call, as in recv_batch),
        counted and with errors handled as recv_batch handles them. Up to MANY_BATCH at a time: the compiled
        recv_many takes them in one recvmmsg (a peer that sends no GSO runs, such as OpenVPN,
        otherwise costs a system call and a Python loop turn per datagram); its Python twin
        py_recv_many receives them one by one. Unconnected: recv_batch's payloads."""
        if self.remote is None:
            return [d for d, _a in self.recv_batch(max_datagrams)]
        out, self._spill = self._spill, []
        many = self._recv_many
        calls = 0
        while len(out) < max_datagrams and calls < 2 * max_datagrams:
            calls += 1                  # errors count too: a batch is bounded
            # As many messages as fit in what is left if each is as long a run as last time (longer
            # runs: the excess waits in _spill, see recv_batch). OpenVPN's server: 32 a call.
            want = max(1, min((max_datagrams - len(out)) // self._run_len, MANY_BATCH))
            try:
                # The descriptor afresh each time: closed meanwhile (by whatever Python code ran
                # between two calls), its number may already be another socket's.
                got = (many(self.sock.fileno(), want) if many is not None
                       else py_recv_many(self.sock, self.rview, want, self.gro, self._held))
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                self.stats["icmp_refused"] = self.stats.get("icmp_refused", 0) + 1
                continue
            except OSError as e:
                self._error("receive", e)
                break
            longest = 1
            for data, seg in got:
                n = len(data)
                if seg and seg < n:
                    run = [data[i:i + seg] for i in range(0, n, seg)]
                    out += run
                    longest = max(longest, len(run))
                else:
                    out.append(data)
            if got:
                self._run_len = longest
            if len(got) < want:
                break                   # the queue is empty: no further call only to hear EAGAIN
        return self._hand_out(out, max_datagrams)

    def _hand_out(self, out: list, limit: int) -> list:
        """The first `limit` of `out`, counted; the rest kept for the next call (_spill)."""
        if len(out) > limit:
            self._spill = out[limit:]
            del out[limit:]
        self.stats["received"] += len(out)
        return out

    @property
    def has_spill(self) -> bool:
        """Datagrams already read wait for the next call: come back without waiting for the socket
        (readiness will not report them)."""
        return bool(self._spill)

    def _error(self, what: str, e: OSError) -> None:
        """A failed receive or send, counted by errno -- or, when the socket itself is gone
        (closed under us), PortGone: that ends the port, not a datagram."""
        _raise_if_ours_gone(what, e)
        name = f"{what} {errno.errorcode.get(e.errno or 0, str(e.errno))}"
        self.errors[name] = self.errors.get(name, 0) + 1

    def send(self, datagram, addr: tuple | None = None, cm: list | tuple = ()) -> bool:
        """One datagram; False (counted) when it did not go out. `cm`: control messages to send
        with it (multihome's pktinfo, which leaves from the local address the client wrote to);
        the one place a single datagram's send is tried and its failure counted."""
        try:
            if cm:
                self.sock.sendmsg([datagram], cm, 0, addr)
            elif addr is None or self.remote is not None:
                self.sock.send(datagram)
            else:
                self.sock.sendto(datagram, addr)
            self.stats["sent"] += 1
            return True
        except (BlockingIOError, InterruptedError):
            self.stats["send_dropped"] += 1
        except OSError as e:
            self._error("send", e)
            self.stats["send_dropped"] += 1
        return False

    def send_batch(self, datagrams: list, addr: tuple | None = None) -> None:
        if len(datagrams) < 2 or not self._gso_for(addr):
            for d in datagrams:
                self.send(d, addr)
            return
        target = None if self.remote is not None else addr
        for i, j, size in _runs(datagrams):
            if j - i == 1:
                self.send(datagrams[i], addr)
            else:
                self._send_gso(datagrams[i:j], size, target)

    def _send_batch_via(self, datagrams: list, addr: tuple | None = None) -> None:
        """multihome's send_batch: `addr` is recv_batch's, the client's address and then the local
        address it wrote to; the datagrams leave from that one (sendmsg with IP_PKTINFO or
        IPV6_PKTINFO), in the same GSO runs as send_batch's (_runs). An address without a local
        part (None) is answered from the route's choice."""
        if addr is None or addr[-1] is None:
            UdpTransport.send_batch(self, datagrams, None if addr is None else addr[:-1])
            return
        local = addr[-1]
        cm = self._pktinfo.get(local)
        if cm is None:
            try:
                cm = pktinfo_cmsg(local)
            except (ValueError, OSError):       # never from the kernel: from the route's choice
                self.stats["bad_local"] = self.stats.get("bad_local", 0) + 1
                cm = []
            if len(self._pktinfo) >= MAX_PKTINFO_CACHE:
                self._pktinfo.clear()
            self._pktinfo[local] = cm
        dest = addr[:-1]
        if len(datagrams) < 2 or not self._gso_for(addr):
            for d in datagrams:
                self.send(d, dest, cm)
            return
        for i, j, size in _runs(datagrams):
            if j - i == 1:
                self.send(datagrams[i], dest, cm)
            else:
                self._send_gso(datagrams[i:j], size, dest, cm, addr)

    def _send_gso(self, run: list, size: int, addr, cm: list = (), key=None) -> None:
        """One GSO sendmsg for `run` to `addr` (None: connected), with `cm` besides UDP_SEGMENT;
        `key`: the caller's name for the destination (no_gso), `addr` unless given."""
        if key is None:
            key = addr
        cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size)), *cm]
        try:
            if addr is None:
                self.sock.sendmsg(run, cmsg)
            else:
                self.sock.sendmsg(run, cmsg, 0, addr)
            self.stats["sent"] += len(run)
            self.stats["gso_sends"] += 1
        except (BlockingIOError, InterruptedError):
            self.stats["send_dropped"] += len(run)
        except OSError as e:
            _raise_if_ours_gone("send", e)
            if e.errno == errno.EMSGSIZE:
                # A segment bigger than the path MTU: GSO cannot fragment, plain sends can.
                self.stats["gso_too_big"] = self.stats.get("gso_too_big", 0) + 1
                for d in run:
                    self.send(d, addr, cm)
            elif e.errno in (errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT):
                log.info("UDP GSO refused by the kernel (%s): sending one datagram per call", e)
                self.gso = False
                for d in run:
                    self.send(d, addr, cm)
            elif e.errno == errno.EINVAL:
                # The destination itself may be invalid (source port 0), or GSO is refused for it
                # alone (Linux 6.1 says EINVAL when a segment exceeds that destination's path MTU).
                # Plain sends tell which; one destination never turns GSO off for everyone.
                sent = sum(self.send(d, addr, cm) for d in run)
                if sent:
                    self._no_gso_for(key, e)
            else:
                # Refused for this destination (EPERM from a firewall, unreachable, ...): drop.
                self.stats["send_dropped"] += len(run)
                self._error("send", e)

    def _gso_for(self, addr) -> bool:
        """Whether a run to `addr` may go as one GSO send: not while GSO is off (for good: a kernel
        without it; for NO_GSO_FOR: refused for MAX_NO_GSO destinations), nor to a destination
        that refused it within NO_GSO_FOR (a path MTU learned since expires as the kernel's does)."""
        if not self.gso:
            if self._gso_back_at is None or self.clock() < self._gso_back_at:
                return False
            self.gso, self._gso_back_at = True, None
        back = self.no_gso.get(addr)
        if back is None:
            return True
        if self.clock() < back:
            return False
        del self.no_gso[addr]
        return True

    def _no_gso_for(self, addr, e: OSError) -> None:
        now = self.clock()
        self.no_gso[addr] = now + NO_GSO_FOR
        if len(self.no_gso) >= MAX_NO_GSO:
            # Only refusals still in force count: a destination's entry goes when it is sent to
            # after its time (_gso_for), so the refusals of clients long gone stayed counted, and
            # MAX_NO_GSO of them over a server's lifetime (one an hour) turned GSO off for
            # everyone, as if the kernel had refused it (review43c).
            self.no_gso = {a: t for a, t in self.no_gso.items() if t > now}
        self.stats["gso_refused_destinations"] = len(self.no_gso)
        if len(self.no_gso) >= MAX_NO_GSO:
            log.info("UDP GSO refused for %d destinations (%s): sending one datagram per call for %.0f s",
                     len(self.no_gso), e, NO_GSO_FOR)
            self.gso = False
            self._gso_back_at = self.clock() + NO_GSO_FOR
            self.no_gso.clear()

    def close(self) -> None:
        self.sock.close()


_OURS_GONE = (errno.EBADF, errno.ENOTSOCK)


def _raise_if_ours_gone(what: str, e: OSError) -> None:
    if e.errno in _OURS_GONE:
        raise PortGone(f"UDP socket: {what} failed: {e}") from e
