"""In-memory stand-ins for the kernel: sockets, a TUN device, readiness and the clock.

Why sockets and not ports: the real transports (transport/udp.py, tcp.py) and the real framing
(transport/link.py) run on top of these, so their error handling is what the gateway tests
exercise. Faults are injected where the kernel would produce them: a send raising EPERM, EINVAL
or ENOBUFS for some destinations, a stream reset or closed mid-frame, garbage datagrams, loss and
reordering from a seeded RNG. Nothing here sleeps: the fake clock moves only when a test says so.
"""
from __future__ import annotations

import errno
import itertools
import random
import socket
import struct
from collections import deque
from typing import Callable

from appliance.transport.tcp import TcpListener, TcpTransport
from appliance.transport.udp import UdpTransport

_fds = itertools.count(10_000)
HEADROOM = 64


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def _oserror(code: int) -> OSError:
    return OSError(code, errno.errorcode.get(code, str(code)))


class MemoryNet:
    """Datagram and stream sockets by address, with fault injection.

    `send_fault(pred)`: pred(src, dst) -> errno or None, consulted on every datagram send.
    `loss`, `reorder`: probabilities per datagram (seeded), like a bad path.
    """

    def __init__(self, seed: int = 1) -> None:
        self.udp: dict[tuple, "MemoryDatagramSocket"] = {}
        self.listeners: dict[tuple, "MemoryListenSocket"] = {}
        self.by_fd: dict[int, object] = {}
        self.rng = random.Random(seed)
        self.loss = 0.0
        self.reorder = 0.0
        self.send_fault: Callable[[tuple, tuple], int | None] = lambda src, dst: None
        self.delivered = 0
        self.gro = False                     # sockets accept UDP_GRO and take inject_run's runs whole
        self._ephemeral = itertools.count(40_000)

    def ephemeral(self, ip: str) -> tuple[str, int]:
        return (ip, next(self._ephemeral))

    def deliver(self, data: bytes, src: tuple, dst: tuple) -> None:
        if self.loss and self.rng.random() < self.loss:
            return
        sock = self.udp.get(dst)
        if sock is None or sock.closed:
            return
        if sock.remote is not None and tuple(src) != sock.remote:
            return          # as the kernel: a connected socket takes only its peer's datagrams
        inbox = sock.inbox
        entry = (bytes(data), src, 0, dst) if sock.pktinfo else (bytes(data), src)
        if self.reorder and inbox and self.rng.random() < self.reorder:
            inbox.insert(self.rng.randrange(len(inbox)), entry)
        else:
            inbox.append(entry)
        self.delivered += 1

    def inject(self, dst: tuple, data: bytes, src: tuple) -> None:
        """A datagram from anywhere (an attacker, garbage), straight into a socket's queue."""
        sock = self.udp[dst]
        sock.inbox.append((bytes(data), src, 0, dst) if sock.pktinfo else (bytes(data), src))

    def inject_run(self, dst: tuple, datagrams: list[bytes], src: tuple) -> None:
        """Datagrams of one size (the last may be shorter) as one GRO-coalesced message, as the
        kernel hands a run to a socket with UDP_GRO on (`gro` must be set before the socket is
        made): one receive, its segment size in the control message."""
        self.udp[dst].inbox.append((b"".join(datagrams), src, len(datagrams[0])))

    def readable(self, fd: int) -> bool:
        obj = self.by_fd.get(fd)
        return obj is not None and obj.readable()

    def writable(self, fd: int) -> bool:
        obj = self.by_fd.get(fd)
        return obj is not None and obj.writable()


class MemoryDatagramSocket:
    """Enough of a UDP socket for UdpTransport (no GRO, GSO split here like the kernel would)."""

    def __init__(self, net: MemoryNet, ip: str, also: tuple[str, ...] = ()) -> None:
        self.net = net
        self.ip = ip
        self.also = also             # the host's further addresses: bound to the wildcard, it has them too
        self.fd = next(_fds)
        net.by_fd[self.fd] = self
        self.local: tuple | None = None
        self.remote: tuple | None = None
        self.inbox: list[tuple] = []     # (data, src[, GRO segment size[, dst (IP_PKTINFO on)]])
        self.closed = False
        self.pktinfo = False         # IP_PKTINFO set: receives say where each datagram was sent to
        self.sent_from: list[tuple] = []   # IP_PKTINFO on: (source IP, destination) of each datagram sent

    # socket API used by UdpTransport
    def setsockopt(self, level, opt, value) -> None:
        if level == 17 and not self.net.gro:     # SOL_UDP: no UDP GRO unless the net has it
            raise _oserror(errno.ENOPROTOOPT)
        if (level, opt) == (0, 8):               # SOL_IP, IP_PKTINFO
            self.pktinfo = bool(value)

    def bind(self, addr: tuple) -> None:
        wild = addr[0] in ("0.0.0.0", "::")
        self.local = (self.ip if wild else addr[0], addr[1])
        self.net.udp[self.local] = self
        for ip in self.also if wild else ():
            self.net.udp[(ip, addr[1])] = self

    def connect(self, addr: tuple) -> None:
        if self.local is None:
            self.local = self.net.ephemeral(self.ip)
            self.net.udp[self.local] = self
        self.remote = tuple(addr)

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def getsockname(self) -> tuple:
        return self.local if self.local is not None else ("0.0.0.0", 0)

    def _recv(self):
        if self.closed:
            raise _oserror(errno.EBADF)
        if not self.inbox:
            raise BlockingIOError(errno.EAGAIN, "EAGAIN")
        return self.inbox.pop(0)

    def recvfrom_into(self, view) -> tuple[int, tuple]:
        n, src, _seg = self._recv_into(view)
        return n, src

    def _recv_into(self, view) -> tuple[int, tuple, int]:
        entry = self._recv()
        data, src = entry[0], entry[1]
        n = min(len(data), len(view))
        view[:n] = data[:n]
        return n, src, (entry[2] if len(entry) > 2 else 0)

    def recvmsg_into(self, bufs, ancsize):  # noqa: ANN001
        entry = self.inbox[0] if self.inbox else None
        n, src, seg = self._recv_into(bufs[0])
        anc = [(17, 104, struct.pack("=i", seg))] if seg else []
        if self.pktinfo and entry is not None and len(entry) > 3:    # in_pktinfo: ifindex, spec_dst, addr
            dst = socket.inet_aton(entry[3][0])
            anc.append((0, 8, struct.pack("=i", 1) + dst + dst))
        return n, anc, 0, src

    def _source(self, cmsg) -> tuple:
        """Where a datagram leaves from: IP_PKTINFO's ipi_spec_dst if one of ours, else our address."""
        for lvl, typ, val in cmsg:
            if (lvl, typ) == (0, 8):
                ip = socket.inet_ntoa(bytes(val[4:8]))
                if ip not in (self.ip, *self.also):
                    raise _oserror(errno.EINVAL)     # not an address of this host
                return (ip, self.local[1])
        return self.local

    def _send_one(self, data, dst: tuple, src: tuple | None = None) -> None:
        if self.closed:
            raise _oserror(errno.EBADF)
        if dst[1] == 0:
            raise _oserror(errno.EINVAL)     # what Linux says to a destination port 0
        src = src or self.local
        code = self.net.send_fault(src, dst)
        if code:
            raise _oserror(code)
        if self.pktinfo:
            self.sent_from.append((src[0], dst))
        self.net.deliver(bytes(data), src, dst)

    def send(self, data) -> int:
        self._send_one(data, self.remote)
        return len(data)

    def sendto(self, data, addr) -> int:
        self._send_one(data, tuple(addr))
        return len(data)

    def sendmsg(self, buffers, cmsg=(), flags=0, addr=None) -> int:  # noqa: ANN001
        dst = tuple(addr) if addr is not None else self.remote
        blob = b"".join(bytes(b) for b in buffers)
        seg = len(blob)
        for lvl, typ, val in cmsg:
            if lvl == 17 and typ == 103:     # UDP_SEGMENT
                seg = int.from_bytes(val[:2], "little")
        # GSO: one refusal for the whole super-datagram, as the kernel does.
        if self.closed:
            raise _oserror(errno.EBADF)
        if dst[1] == 0:
            raise _oserror(errno.EINVAL)
        src = self._source(cmsg)
        code = self.net.send_fault(src, dst)
        if code:
            raise _oserror(code)
        for i in range(0, len(blob), seg) if seg else (0,):      # an empty datagram is one too
            if self.pktinfo:
                self.sent_from.append((src[0], dst))
            self.net.deliver(blob[i:i + seg], src, dst)
        return len(blob)

    def close(self) -> None:
        self.closed = True
        for key in [k for k, v in self.net.udp.items() if v is self]:
            del self.net.udp[key]
        self.net.by_fd.pop(self.fd, None)

    def readable(self) -> bool:
        return bool(self.inbox)

    def writable(self) -> bool:
        return True


class MemoryStreamSocket:
    """One end of an in-memory TCP connection."""

    def __init__(self, net: MemoryNet, local: tuple, remote: tuple) -> None:
        self.net = net
        self.fd = next(_fds)
        net.by_fd[self.fd] = self
        self.local, self.remote = local, remote
        self.peer: MemoryStreamSocket | None = None
        self.inbox = bytearray()
        self.eof = False
        self.reset = False
        self.closed = False
        self.send_fault: int | None = None     # errno every send raises (a firewall, a reset)
        self.window = 1 << 30                  # bytes the peer takes before EAGAIN
        self.wr_shut = False                   # shutdown(SHUT_WR) done: sends fail with EPIPE

    def setblocking(self, flag: bool) -> None:
        pass

    def settimeout(self, t) -> None:  # noqa: ANN001
        pass

    def setsockopt(self, *a) -> None:
        pass

    def getsockopt(self, *a) -> int:
        return 0                               # SO_ERROR: connected (the connect is immediate here)

    def getsockname(self) -> tuple:
        return self.local

    def fileno(self) -> int:
        return self.fd

    def recv(self, n: int) -> bytes:
        if self.closed:
            raise _oserror(errno.EBADF)
        if self.inbox:
            data = bytes(self.inbox[:n])
            del self.inbox[:n]
            return data
        if self.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self.eof:
            return b""
        raise BlockingIOError(errno.EAGAIN, "EAGAIN")

    def recv_into(self, buf) -> int:  # noqa: ANN001
        data = self.recv(len(buf))
        buf[:len(data)] = data
        return len(data)

    def send(self, data) -> int:
        if self.closed:
            raise _oserror(errno.EBADF)
        if self.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self.send_fault:
            raise _oserror(self.send_fault)
        if self.wr_shut or self.peer is None or self.peer.closed:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        n = min(len(data), self.window)
        if n == 0:
            raise BlockingIOError(errno.EAGAIN, "EAGAIN")
        self.window -= n
        self.peer.inbox += bytes(data[:n])
        return n

    def shutdown(self, how: int) -> None:
        """Only SHUT_WR (a relay's half-close): the peer reads EOF after what was sent."""
        if self.closed:
            raise _oserror(errno.EBADF)
        self.wr_shut = True
        if self.peer is not None:
            self.peer.eof = True

    def close(self) -> None:
        """As Linux: a close that leaves received bytes unread is an RST (tcp_close), and the peer
        reads what it has already, then ECONNRESET; else the peer reads EOF after the rest."""
        if self.closed:
            return
        if self.inbox:
            self.abort()
            return
        self.closed = True
        self.net.by_fd.pop(self.fd, None)
        if self.peer is not None:
            self.peer.eof = True

    def abort(self) -> None:
        """Close with RST: the other end's next recv/send raises ECONNRESET."""
        self.inbox.clear()
        self.close()
        if self.peer is not None:
            self.peer.reset = True

    def readable(self) -> bool:
        return bool(self.inbox) or self.eof or self.reset

    def writable(self) -> bool:
        return self.window > 0 or self.reset


class MemoryListenSocket:
    def __init__(self, net: MemoryNet, addr: tuple) -> None:
        self.net = net
        self.addr = addr
        self.fd = next(_fds)
        net.by_fd[self.fd] = self
        self.backlog: deque = deque()
        self.accept_fault: int | None = None   # errno accept raises (EMFILE: out of descriptors)
        self.closed = False
        self.accept_calls = 0

    def setsockopt(self, *a) -> None:
        pass

    def bind(self, addr) -> None:  # noqa: ANN001
        self.net.listeners[self.addr] = self

    def listen(self, n: int) -> None:
        pass

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def accept(self):
        self.accept_calls += 1
        if self.closed:
            raise _oserror(errno.EBADF)
        if self.accept_fault:
            raise _oserror(self.accept_fault)
        if not self.backlog:
            raise BlockingIOError(errno.EAGAIN, "EAGAIN")
        s = self.backlog.popleft()
        return s, s.remote

    def close(self) -> None:
        self.closed = True
        self.net.by_fd.pop(self.fd, None)
        self.net.listeners.pop(self.addr, None)

    def readable(self) -> bool:
        return bool(self.backlog) or bool(self.accept_fault)

    def writable(self) -> bool:
        return False


def stream_connect(net: MemoryNet, src_ip: str, addr: tuple) -> MemoryStreamSocket:
    """A connected pair; the server's end waits in the listener's backlog."""
    lst = net.listeners.get(tuple(addr))
    if lst is None or lst.closed:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    local = net.ephemeral(src_ip)
    a = MemoryStreamSocket(net, local, tuple(addr))
    b = MemoryStreamSocket(net, tuple(addr), local)
    a.peer, b.peer = b, a
    lst.backlog.append(b)
    return a


class MemoryAddressWatch:
    """The host's addresses as the client's AddressWatchPort sees them: `remove(ip)` is an `ip
    addr del` (the watch turns readable), `local` what RTM_GETADDR would list."""

    def __init__(self, net: MemoryNet, ip: str) -> None:
        self.net = net
        self.fd = next(_fds)
        net.by_fd[self.fd] = self
        self.local = {ip}
        self.events = 0
        self.has_pending = False
        self.closed = False
        self.fail: int | None = None           # errno removed()/is_local() raise (a broken socket)

    def remove(self, ip: str) -> None:
        self.local.discard(ip)
        self.events += 1

    def fileno(self) -> int:
        return self.fd

    def readable(self) -> bool:
        return self.events > 0 and not self.closed

    def writable(self) -> bool:
        return False

    def removed(self, limit: int = 16) -> bool:
        if self.fail:
            raise _oserror(self.fail)
        seen, self.events = self.events > 0, 0
        return seen

    def is_local(self, address: str) -> bool:
        return address in self.local

    def close(self) -> None:
        self.closed = True
        self.net.by_fd.pop(self.fd, None)


class MemoryPorts:
    """The gateway's Ports on a MemoryNet: the real transports over in-memory sockets."""

    def __init__(self, net: MemoryNet, ip: str) -> None:
        self.net, self.ip = net, ip
        self.also: tuple[str, ...] = ()        # further addresses of this host (multihome tests)
        self.addresses: MemoryAddressWatch | None = None     # the client's, once address_watch() made it
        self.names: dict[str, list[str]] = {}
        self.udp_sockets: list[MemoryDatagramSocket] = []
        self.streams: list[MemoryStreamSocket] = []
        self.listen_socket: MemoryListenSocket | None = None

    def udp(self, local, remote, multihome: bool = False) -> UdpTransport:
        s = MemoryDatagramSocket(self.net, self.ip, self.also)
        self.udp_sockets.append(s)
        return UdpTransport(local, remote, sock=s, multihome=multihome)

    def tcp_connect(self, remote, local=None) -> TcpTransport:  # noqa: ANN001
        self.tcp_locals = getattr(self, "tcp_locals", []) + [local]
        s = stream_connect(self.net, self.ip, remote)
        self.streams.append(s)
        t = TcpTransport(s)
        t.connecting = True          # as a non-blocking connect: the gateway waits for writability
        return t

    def tcp_listen(self, local) -> TcpListener:  # noqa: ANN001
        addr = (self.ip if local[0] in ("0.0.0.0", "::") else local[0], local[1])
        self.listen_socket = s = MemoryListenSocket(self.net, addr)
        return TcpListener(addr, sock=s)

    def resolve(self, host: str, port: int, proto: str, family) -> list[tuple[str, int]]:  # noqa: ANN001
        """`names` maps a host name to its addresses (a test's DNS); anything else is an address."""
        return [(a, port) for a in self.names.get(host, [host])]

    def address_watch(self) -> MemoryAddressWatch:
        self.addresses = MemoryAddressWatch(self.net, self.ip)
        return self.addresses


class ChannelTun:
    """A TUN device as two queues: `inject` is the OS sending into the tunnel, `written` what the
    gateway wrote out of it."""

    def __init__(self, net: MemoryNet, name: str = "tun-mem") -> None:
        self.name = name
        self.fd = next(_fds)
        net.by_fd[self.fd] = self
        self.net = net
        self.inbox: deque = deque()
        self.written: list[bytes] = []
        self._queued: list[bytes] = []
        self.stats = {"read": 0, "written": 0}
        self.closed = False
        self.tso = True                 # TunDevice.set_tso's state (the fake has no super-packets)

    def set_tso(self, on: bool) -> None:
        self.tso = on

    def inject(self, pkt: bytes) -> None:
        self.inbox.append(bytes(pkt))

    def fileno(self) -> int:
        return self.fd

    def read_batch(self, max_packets: int = 64) -> list:
        out = []
        while self.inbox and len(out) < max_packets:
            p = self.inbox.popleft()
            buf = bytearray(HEADROOM + len(p))
            buf[HEADROOM:] = p
            out.append(memoryview(buf)[HEADROOM:])
        self.stats["read"] += len(out)
        return out

    def queue(self, pkt) -> None:
        self._queued.append(bytes(pkt))

    def queue_many(self, pkts) -> None:
        self._queued += map(bytes, pkts)

    def flush(self) -> int:
        n = len(self._queued)
        self.written += self._queued
        self._queued = []
        self.stats["written"] += n
        return n

    def close(self) -> None:
        self.closed = True
        self.net.by_fd.pop(self.fd, None)

    def readable(self) -> bool:
        return bool(self.inbox)

    def writable(self) -> bool:
        return True


class PooledChannelTun(ChannelTun):
    """A ChannelTun whose read_batch behaves like TunDevice's: views into a small pool of reused
    buffers, valid only until the next read_batch. Each read_batch first poisons the whole pool,
    so a view kept past its lifetime reads 0xEE bytes instead of quietly staying right."""

    POISON = 0xEE

    def __init__(self, net: MemoryNet, name: str = "tun-mem") -> None:
        super().__init__(net, name)
        self._pool: list[bytearray] = []

    def read_batch(self, max_packets: int = 64) -> list:
        for b in self._pool:
            b[:] = bytes([self.POISON]) * len(b)
        out = []
        while self.inbox and len(out) < max_packets:
            p = self.inbox.popleft()
            if len(out) == len(self._pool):
                self._pool.append(bytearray(HEADROOM + 65535))
            buf = self._pool[len(out)]
            buf[HEADROOM:HEADROOM + len(p)] = p
            out.append(memoryview(buf)[HEADROOM:HEADROOM + len(p)])
        self.stats["read"] += len(out)
        return out


class FakeTunnelNetwork:
    """The client's TunnelNet: a ChannelTun and a record of what was pushed."""

    tun_class = ChannelTun      # PooledChannelTun: TunDevice's buffer lifetimes

    def __init__(self, net: MemoryNet) -> None:
        self.net = net
        self.tun: ChannelTun | None = None
        self.pushed = None
        self.applied = 0
        self.block_ipv6 = False
        self.closed = 0             # close() calls: the host's routes and DNS given back (at the client's end)

    def apply(self, pushed, remote_ip: str) -> None:
        if pushed is None or pushed.ifconfig is None:
            raise RuntimeError("server pushed no ifconfig")
        if self.tun is None:
            self.tun = self.tun_class(self.net, "tun-client")
        self.pushed = pushed
        self.applied += 1
        self.block_ipv6 = pushed.block_ipv6

    def device_reopened(self) -> None:
        """Nothing waits here (tests/gateway/test_route_delay_tun.py's DelayNet records it)."""

    router_on_link_now = True       # (tests/gateway/test_route_delay_dhcp.py: the ACK before the address)

    def router_on_link(self, router: str) -> bool:
        """Whether the tap holds an address on `router`'s network (TunnelNetwork's asks the kernel)."""
        return self.router_on_link_now

    def reach(self, remote_ip: str) -> None:
        """No routes here: every remote is reachable."""

    def prepare(self) -> None:
        if self.tun is None:
            self.tun = self.tun_class(self.net, "tun-client")

    def close(self) -> None:
        self.closed += 1
        if self.tun is not None:
            self.tun.close()


class FakeServerNet:
    tun_class = ChannelTun      # PooledChannelTun: TunDevice's buffer lifetimes

    def __init__(self, net: MemoryNet) -> None:
        self.net = net
        self.tun: ChannelTun | None = None

    def open(self) -> ChannelTun:
        self.tun = self.tun_class(self.net, "tun-server")
        return self.tun

    def hw_address(self) -> bytes | None:
        """dev tap: the TAP device's MAC (ServerTunnelNetwork.hw_address)."""
        return self.mac

    mac: bytes | None = None

    def close(self) -> None:
        if self.tun is not None:
            self.tun.close()


class FakeUdp:
    """An unconnected UDP port as P2PListenLink uses it (recv_batch of (datagram, address),
    send_batch to an address): what the test queues in `inbox` comes in; what is sent is recorded."""

    def __init__(self) -> None:
        self.inbox: list[tuple[bytes, tuple]] = []
        self.sent: list[tuple[bytes, tuple]] = []
        self.errors: dict[str, int] = {}
        self.has_spill = False

    def recv_batch(self, limit: int):
        out, self.inbox = self.inbox[:limit], self.inbox[limit:]
        return out

    def send_batch(self, packets, addr):
        self.sent += [(bytes(p), addr) for p in packets]

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        pass


class MemoryWaiter:
    """Readiness from the MemoryNet; never sleeps (the test moves the FakeClock)."""

    def __init__(self, net: MemoryNet) -> None:
        self.net = net
        self.reg: dict[int, tuple[object, bool, bool]] = {}

    def register(self, port, data, write: bool = False, read: bool = True) -> None:
        fd = port.fileno()
        if fd in self.reg:
            raise KeyError(f"fd {fd} registered twice")
        self.reg[fd] = (data, write, read)

    def modify(self, port, data, write: bool, read: bool = True) -> None:
        self.reg[port.fileno()] = (data, write, read)

    def unregister(self, port) -> None:
        try:
            self.reg.pop(port.fileno(), None)
        except OSError:
            pass

    def wait(self, timeout) -> list:  # noqa: ANN001
        out = []
        for fd, (data, write, read) in list(self.reg.items()):
            r = read and self.net.readable(fd)
            w = write and self.net.writable(fd)
            if r or w:
                out.append((data, r, w))
        return out

    def close(self) -> None:
        self.reg.clear()


def run_pumps(clock: FakeClock, pumps: list, until: Callable[[], bool], max_steps: int = 20_000,
              max_time: float = 600.0) -> bool:
    """Step every pump without blocking; when none has work, move the clock to the earliest
    deadline (at most `max_time` ahead: then the clock stops there). True once `until()` holds;
    False when steps, time or deadlines run out."""
    end = clock.t + max_time
    for _ in range(max_steps):
        if until():
            return True
        busy = False
        for p in pumps:
            busy = p.step(block=False) or busy
        if not busy:
            dls = [d for d in (p.timers.next_deadline() for p in pumps) if d is not None]
            if not dls or min(dls) > end:
                clock.t = max(clock.t, end)
                return until()
            clock.t = max(clock.t, min(dls))
    return until()
