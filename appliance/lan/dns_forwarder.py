"""The DNS forwarder on the LAN address: LAN hosts ask it (UDP and TCP port 53), it asks the DNS
servers the VPN server pushed, through the tunnel only.

A tunnel observer (gateway/observers.py) on the client's one pump: its sockets and timers are
registered there, no thread. The decisions (limits, IDs, matching, retries) are the sans-I/O
core's (dns_core.py); this module moves bytes and enforces where they may go:

- Upstream sockets are bound to the TUN device (SO_BINDTODEVICE) and the tunnel address, one
  fresh socket per attempt (so a fresh random source port from the kernel): a pushed public
  resolver can never be reached over the WAN, redirect-gateway or not, and with the tunnel down
  there is no socket to send from at all (the core answers SERVFAIL at once).
- A pushed server at one of our own addresses (tunnel, LAN, WAN, loopback, any address of this
  host) is left out and logged: the kernel delivers a packet to a local address locally, even
  from a socket bound to the TUN, so a server pushing `dhcp-option DNS <our tunnel address>`
  would have sent the LAN's queries to whatever listens on this host at that port; a multicast
  or broadcast one likewise (pushed_dns.py: the rule DHCP applies too).
- The listeners are bound to the LAN address and the LAN NIC, so only hosts on the LAN are
  served (not the WAN, not the tunnel).
- TCP (RFC 7766): pipelined queries answered as they come back (any order), bounded
  connections (one of the LAN address holding the most is closed to admit a new one, its
  longest-idle with no query in flight first, so idle or slowloris connections cannot lock
  others out, and one host's connection flood, queries or not, closes its own rather than
  another host's waiting for its answer), an idle timeout counted from the last complete query (a
  trickle of bytes does not keep a connection), and bounded bytes in and out per connection.
- Single-label names and reverse lookups of the LAN's and private addresses are answered here,
  never forwarded (dns_local.py): they told the VPN provider the LAN's names and addresses.
- Answers giving an address of the LAN, of this host or loopback reach the LAN host as NODATA
  (dns_rebind.py: DNS rebinding); this host's addresses are read at each tunnel change and
  every OWN_REREAD seconds.
- What the LAN or upstream sends that we drop is counted and logged every LOG_EVERY seconds at
  most, with the core's counters.
"""
from __future__ import annotations

import errno
import ipaddress
import logging
import socket
import struct
from typing import TYPE_CHECKING, Callable, Iterable

from ..gateway.eventlog import MAX_SUMMARY_ITEMS, some_of
from . import dns_core
from .dns_core import Close, Done, ForwarderCore, Limits, Log, Reply, Send
from .dns_rebind import RebindFilter
from .dns_local import IPNet, LeaseNames, LocalZones, vpn_networks
from .pushed_dns import not_through_the_tunnel, own_address

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")

DNS_PORT = 53
LOG_EVERY = 30.0
UDP_BATCH = 64                  # datagrams per wake-up from one listener (the rest next time)
MAX_QUERY = 4096                # a query larger than this (UDP or TCP) is not a query
MAX_ANSWER = 65535
TCP_MAX_CLIENTS = 64
TCP_IDLE = 10.0                 # seconds without a complete query (and nothing in flight)
TCP_MAX_BYTES_IN = 256 * 1024   # per connection; then it is closed (the client reconnects)
TCP_MAX_OUT = 256 * 1024        # answers queued for a client that does not read
# Queries taken from one TCP connection per wake-up (the rest stay in its buffer for the next, and
# nothing more is read from it until they are taken), their answers sent in one write. Why: a read
# of 4 KB holds some 200 pipelined queries, each parsed and answered (REFUSED once its address is
# over its rate) at ~25 us: 16 connections of one LAN host sending queries as fast as they could
# held the pump -- the tunnel's too -- for up to 0.2 s a wake-up, every wake-up. UDP_BATCH is the
# same bound for the UDP listener.
TCP_BATCH = 8
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
# The LAN UDP listener's receive buffer. Every LAN host's queries share it, so while one host
# floods, what decides whether another's query is kept is whether the buffer fills between two
# reads: the default (208 KiB, ~270 small datagrams) fills in under 10 ms of a 36,000-a-second
# flood, less than the pump's round or one time slice on a busy host, and the lab's victim lost
# 2 of 32 queries even with the flood's excess dropped at a dict lookup. 2 MiB (~2700
# datagrams) rides out ~75 ms; the memory is taken only while it is full.
LAN_RCVBUF = 2 << 20
# This host's addresses (for the rebinding check) are read at each tunnel change and again this
# often: a WAN address that comes without one (a second DHCP address, SLAAC after the 10 s wait,
# one an admin adds) was not known as ours, and an answer giving it passed. One netlink dump.
OWN_REREAD = 30.0
ANY_PORT_TRIES = 20            # port 0 (tests): UDP ports tried until TCP has the same one free


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def _host_addresses() -> list[str] | None:
    """Every address of this host's interfaces (this network namespace); none if netlink fails;
    None when the kernel's dump kept changing while read (DumpInterrupted): not known now, the
    caller keeps its last reading (review48b: an empty one took the host's own addresses out
    of the rebinding check until the next reading, OWN_REREAD later)."""
    from ..tun.rtnl import DumpInterrupted, Rtnl
    try:
        with Rtnl() as nl:
            return [a for _fam, a, _plen, _idx in nl.addrs()]
    except DumpInterrupted:
        return None
    except OSError:
        return []


def _receive_buffer(s: socket.socket, size: int) -> None:
    """SO_RCVBUF of `size` past net.core.rmem_max when we may (CAP_NET_ADMIN: the appliance
    starts as root and the client keeps it), else as much as rmem_max allows."""
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass


def _whole_message(buf: bytearray) -> bool:
    """Whether `buf` starts with a whole length-prefixed DNS message (RFC 1035 4.2.2)."""
    return len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf, 0)[0]


class _TcpClient:
    """One LAN TCP connection: bytes in until a whole query, answers out in any order."""
    __slots__ = ("sock", "source", "inbuf", "outbuf", "bytes_in", "last", "closed", "on_read", "on_write",
                 "holding")

    def __init__(self, sock: socket.socket, source: str, now: float) -> None:
        self.sock = sock
        self.source = source
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.bytes_in = 0
        self.last = now                 # last complete query (or the accept)
        self.closed = False
        self.holding = False            # answers queued, not sent, while a batch is taken
        self.on_read: Callable[[], None] = lambda: None
        self.on_write: Callable[[], None] = lambda: None


class _Upstream:
    """The socket of one upstream attempt (UDP, or TCP with its length-prefixed framing)."""
    __slots__ = ("token", "sock", "server", "tcp", "outbuf", "inbuf", "connected")

    def __init__(self, token: int, sock: socket.socket, server: dns_core.Server, tcp: bool) -> None:
        self.token = token
        self.sock = sock
        self.server = server
        self.tcp = tcp
        self.outbuf = b""
        self.inbuf = bytearray()
        self.connected = False


class DnsForwarder:
    """The `[lan] dns_forwarder` service (see the module doc)."""

    def __init__(self, listen: list[str], lan_if: str | None, port: int = DNS_PORT, limits: Limits | None = None,
                 bind_device: bool = True, is_own: Callable[[str, Iterable[str]], bool] = own_address,
                 lan_networks: Iterable[IPNet] = (), leases: LeaseNames | None = None,
                 profile_networks: Iterable[IPNet] = (), rebind_protection: bool = True,
                 rebind_allow: Iterable[str] = (),
                 host_addresses: Callable[[], Iterable[str] | None] | None = None) -> None:
        self.listen = list(listen)
        self.lan_if = lan_if
        self.port = port
        self.bind_device = bind_device  # False only in tests on loopback without CAP_NET_RAW
        self.is_own = is_own            # tests on loopback let their fake upstream's address through
        lan_networks = list(lan_networks)
        self.core = ForwarderCore(limits or Limits(), local=LocalZones(lan_networks, leases),
                                  rebind=RebindFilter(lan_networks, rebind_allow) if rebind_protection else None)
        self.host_addresses = host_addresses or _host_addresses
        self.profile_networks = list(profile_networks)   # the profile's `route` lines: the VPN's too
        self.pump: "Pump | None" = None
        self.udp: list[socket.socket] = []
        self.tcp_listeners: list[socket.socket] = []
        self.clients: dict[int, _TcpClient] = {}
        self.upstream: dict[int, _Upstream] = {}
        self.tun: str | None = None
        self._seen: tuple | None = None         # (dns_up, tun_name, pushed) last acted on
        self.src: dict[int, str] = {}    # family -> our tunnel address
        self._logged: dict[str, int] = {}
        self._own: tuple[str, ...] | None = None    # what the rebinding check was last given as ours
        self._host_own: tuple[str, ...] = ()        # the host's addresses as last read (_read_own)

    # ---------------------------------------------------------------- the observer
    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        self.pump = pump
        for addr in self.listen:
            u, t = self._listen_on(addr)
            for s in (u, t):
                s.setblocking(False)
            self.udp.append(u)
            self.tcp_listeners.append(t)
            pump.watch(u, lambda u=u: self._on_udp(u))
            pump.watch(t, lambda t=t: self._on_accept(t))
        pump.timers.arm(("dns", "log"), pump.clock() + LOG_EVERY, self._log_counts)
        if self.core.rebind is not None:
            pump.timers.arm(("dns", "own"), pump.clock() + OWN_REREAD, self._reread_own)
        log.info("DNS forwarder on %s port %d (UDP and TCP): SERVFAIL until the tunnel is up",
                 ", ".join(self.listen), self.port)

    def _listen_on(self, addr: str) -> tuple[socket.socket, socket.socket]:
        """UDP and TCP sockets bound to `addr` at self.port. Port 0 (tests) is any port free for
        both: the kernel picks the UDP one, and TCP may find it taken (the two share the
        ephemeral range: a busy host's outgoing connection holds it) -- then another is tried,
        a bounded number of times."""
        any_port = self.port == 0
        for attempt in range(ANY_PORT_TRIES if any_port else 1):
            fam = _family(addr)
            u = socket.socket(fam, socket.SOCK_DGRAM)
            t = socket.socket(fam, socket.SOCK_STREAM)
            try:
                self._to_lan(u)
                _receive_buffer(u, LAN_RCVBUF)
                u.bind((addr, self.port))
                self.port = u.getsockname()[1]  # port 0 (tests): TCP takes the same port
                t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._to_lan(t)
                t.bind((addr, self.port))
                t.listen(64)
                return u, t
            except OSError as e:
                u.close()
                t.close()
                if any_port and e.errno == errno.EADDRINUSE and attempt + 1 < ANY_PORT_TRIES:
                    self.port = 0
                    continue
                raise OSError(e.errno, f"DNS forwarder cannot listen on {addr} port {self.port}: {e.strerror}"
                              " (another DNS server there? `[lan] dns_forwarder = false` turns ours off)") from e
        raise AssertionError("unreachable")

    def tunnel_changed(self, state: "TunnelState") -> None:
        # From tunnel-up (dns_up), as 2.6's up script sets DNS: with route-delay before the routes
        # (the upstream sockets are bound to the TUN and need none of them), and their arrival
        # (CONNECTED, the same push) keeps the servers and the queries in flight.
        seen = (state.dns_up, state.tun_name, state.pushed)
        if seen == self._seen:
            return
        self._seen = seen
        servers: list[dns_core.Server] = []
        self.src = {}
        p = state.pushed
        if state.dns_up and p is not None and self.core.local is not None:
            self.core.local.set_vpn_networks([*vpn_networks(p), *self.profile_networks])
        if state.dns_up and p is not None and state.tun_name:
            if p.ifconfig:
                self.src[socket.AF_INET] = p.ifconfig[0]
            if p.ifconfig_ipv6:
                self.src[socket.AF_INET6] = p.ifconfig_ipv6[0].split("/")[0]
            servers = [ep for ep in p.dns_endpoints if _family(ep[0]) in self.src]
            skipped = [a for a, _ in p.dns_endpoints if _family(a) not in self.src]
            if skipped:
                log.warning("DNS forwarder: no tunnel address of the family of %s: not used",
                            some_of(skipped, "servers", ", "))
            ours = [*self.src.values(), *self.listen]
            refused = {a: why for a, _ in servers if (why := not_through_the_tunnel(a, ours, is_own=self.is_own))}
            for a, why in list(refused.items())[:MAX_SUMMARY_ITEMS]:     # a push may name ~1000
                log.warning("DNS forwarder: pushed DNS server %s is %s, not a server through the tunnel: "
                            "not used", a, why)
            if len(refused) > MAX_SUMMARY_ITEMS:
                log.warning("DNS forwarder: %d more pushed DNS servers not used (not servers through the tunnel)",
                            len(refused) - MAX_SUMMARY_ITEMS)
            servers = [ep for ep in servers if ep[0] not in refused]
        self.tun = state.tun_name if servers else None
        # The appliance's own addresses, for the rebinding check: read at each tunnel change
        # (a WAN DHCP lease's address, the tunnel's) and every OWN_REREAD, not per answer.
        self._read_own()
        self._run(self.core.set_servers(servers))
        for token in list(self.upstream):
            self._close_upstream(token)
        if servers:
            log.info("DNS forwarder: LAN queries go to %s through %s",
                     some_of([f"{a}" if port == 53 else f"{a} port {port}" for a, port in servers], "servers", ", "),
                     self.tun)
        else:
            log.info("DNS forwarder: answering SERVFAIL (%s)",
                     "tunnel down" if not state.dns_up else "the server pushed no usable DNS server")

    def _read_own(self) -> None:
        if self.core.rebind is not None:
            host = self.host_addresses()
            if host is None:                    # not known now (_host_addresses): the last reading
                host = self._host_own
            self._host_own = tuple(host)
            own = (*self.src.values(), *self.listen, *self._host_own)
            if own != self._own:
                self._own = own
                self.core.rebind.set_own(own)

    def _reread_own(self) -> None:
        self._read_own()
        if self.pump is not None and self.udp:
            self.pump.timers.arm(("dns", "own"), self._now() + OWN_REREAD, self._reread_own)

    def close(self) -> None:
        if self.pump is not None:
            self.pump.timers.cancel(("dns", "own"))
        for token in list(self.upstream):
            self._close_upstream(token)
        for c in list(self.clients.values()):
            self._close_client(c, notify=False)
        for s in self.udp + self.tcp_listeners:
            if self.pump is not None:
                self.pump.unwatch(s)
            s.close()
        self.udp, self.tcp_listeners = [], []
        self._log_counts(final=True)

    # ---------------------------------------------------------------- sockets
    def _to_lan(self, s: socket.socket) -> None:
        if self.bind_device and self.lan_if:
            s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.lan_if.encode())

    def _now(self) -> float:
        assert self.pump is not None
        return self.pump.clock()

    def _on_udp(self, u: socket.socket) -> None:
        for _ in range(UDP_BATCH):
            try:
                data, addr = u.recvfrom(MAX_QUERY)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.core.count("LAN socket error")
                return
            self._run(self.core.query((u, addr), addr[0], data, self._now()))
        assert self.pump is not None
        self.pump.again(u, lambda: self._on_udp(u))

    def _on_accept(self, t: socket.socket) -> None:
        assert self.pump is not None
        for _ in range(16):
            try:
                sock, addr = t.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.core.count("LAN socket error")
                return
            if len(self.clients) >= TCP_MAX_CLIENTS:
                self.core.count("TCP connection closed to make room")
                self._close_client(self._evictee())
            sock.setblocking(False)
            c = _TcpClient(sock, addr[0], self._now())
            c.on_read = lambda c=c: self._on_client_read(c)
            c.on_write = lambda c=c: self._flush_client(c)
            self.clients[id(c)] = c
            self.pump.watch(sock, c.on_read, c.on_write)
            self._arm_idle(c)

    def _evictee(self) -> _TcpClient:
        """The connection to close for a new one: one of the LAN address holding the most
        connections, and of those the longest idle with no query in flight (else the longest
        idle). So a slowloris or idle client never locks the others out, and a flood of new
        connections from one host closes its own -- also when each of them sends a query that
        stays upstream, which made them all "busy" and the other host's connection, waiting
        longest for its answer, the one closed."""
        per_source: dict[str, int] = {}
        for c in self.clients.values():
            per_source[c.source] = per_source.get(c.source, 0) + 1
        most = max(per_source.values())
        pool = [c for c in self.clients.values() if per_source[c.source] == most]
        busy = {id(p.client) for p in self.core.pending.values() if isinstance(p.client, _TcpClient)}
        idle = [c for c in pool if id(c) not in busy]
        return min(idle or pool, key=lambda c: c.last)

    def _arm_idle(self, c: _TcpClient) -> None:
        assert self.pump is not None
        self.pump.timers.arm(("dns-tcp", id(c)), c.last + TCP_IDLE, lambda: self._on_idle(c))

    def _on_idle(self, c: _TcpClient) -> None:
        if c.closed:
            return
        now = self._now()
        busy = any(p.client is c for p in self.core.pending.values())
        if not busy and now - c.last >= TCP_IDLE:
            self.core.count("TCP connection idle")
            self._close_client(c)
            return
        assert self.pump is not None
        self.pump.timers.arm(("dns-tcp", id(c)), max(c.last + TCP_IDLE, now + 1.0), lambda: self._on_idle(c))

    def _on_client_read(self, c: _TcpClient) -> None:
        if c.closed:
            return
        assert self.pump is not None
        if not self._take_queries(c):      # a whole batch from what was read before: no reading now
            if not c.closed:
                self.pump.again(c.sock, c.on_read)
            return
        try:
            data = c.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_client(c)
            return
        if not data:
            self._close_client(c)
            return
        c.bytes_in += len(data)
        if c.bytes_in > TCP_MAX_BYTES_IN:
            self.core.count("TCP connection over its byte limit")
            self._close_client(c)
            return
        c.inbuf += data
        if not self._take_queries(c) and not c.closed:
            self.pump.again(c.sock, c.on_read)
        if not c.closed:
            self._arm_idle(c)

    def _take_queries(self, c: _TcpClient) -> bool:
        """Up to TCP_BATCH whole queries from the connection's buffer, their answers written
        once; False when the batch ended it with more in the buffer (or the connection closed)."""
        c.holding = True
        try:
            for _ in range(TCP_BATCH):
                if len(c.inbuf) < 2 or c.closed:
                    return not c.closed
                (n,) = struct.unpack_from("!H", c.inbuf, 0)
                if n > MAX_QUERY or n < 1:
                    self.core.count("TCP query too large or empty")
                    self._close_client(c)
                    return False
                if len(c.inbuf) < 2 + n:
                    return True
                msg = bytes(c.inbuf[2:2 + n])
                del c.inbuf[:2 + n]
                c.last = self._now()
                self._run(self.core.query(c, c.source, msg, c.last, tcp=True))
            # A whole batch taken: is another one waiting? A length that ends the connection
            # (0, past MAX_QUERY) counts as waiting, so it is acted on at the next wake-up, not
            # left in the buffer until the host writes again or the idle timer (fuzz48).
            buf = c.inbuf
            if c.closed:
                return False
            if len(buf) < 2:
                return True
            (n,) = struct.unpack_from("!H", buf, 0)
            return 1 <= n <= MAX_QUERY and len(buf) < 2 + n
        finally:
            c.holding = False
            self._flush_client(c)

    def _reply_tcp(self, c: _TcpClient, data: bytes) -> None:
        if c.closed:
            return
        if len(c.outbuf) + 2 + len(data) > TCP_MAX_OUT:       # the frame as queued: its length prefix too
            self.core.count("TCP client not reading its answers")
            self._close_client(c)
            return
        c.outbuf += struct.pack("!H", len(data)) + data
        if not c.holding:
            self._flush_client(c)

    def _flush_client(self, c: _TcpClient) -> None:
        if c.closed:
            return
        assert self.pump is not None
        if c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
                del c.outbuf[:n]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close_client(c)
                return
        self.pump.want_write(c.sock, bool(c.outbuf), c.on_read, c.on_write)

    def _close_client(self, c: _TcpClient, notify: bool = True) -> None:
        if c.closed:
            return
        c.closed = True
        assert self.pump is not None
        self.pump.unwatch(c.sock)
        self.pump.timers.cancel(("dns-tcp", id(c)))
        self.clients.pop(id(c), None)
        try:
            c.sock.close()
        except OSError:
            pass
        if notify:
            self._run(self.core.client_gone(c))

    # ---------------------------------------------------------------- upstream
    def _open_upstream(self, a: Send) -> None:
        """A fresh socket for one attempt: on the TUN device, from the tunnel address."""
        assert self.pump is not None
        self._close_upstream(a.token)
        self.pump.timers.arm(("dns-up", a.token), a.deadline, lambda t=a.token: self._failed(t))
        fam = _family(a.server[0])
        src = self.src.get(fam)
        if src is None or self.tun is None:
            self.core.count("no tunnel address for the server")
            return                      # the timer ends this attempt
        try:
            s = socket.socket(fam, socket.SOCK_STREAM if a.tcp else socket.SOCK_DGRAM)
        except OSError:
            self.core.count("upstream socket error")
            return
        up = _Upstream(a.token, s, a.server, a.tcp)
        try:
            s.setblocking(False)
            if self.bind_device:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.tun.encode())
            s.bind((src, 0))
            if a.tcp:
                up.outbuf = struct.pack("!H", len(a.data)) + a.data
                try:
                    s.connect(a.server)
                except (BlockingIOError, InterruptedError):
                    pass
            else:
                s.connect(a.server)
                s.send(a.data)
        except OSError:
            self.core.count("upstream socket error")
            s.close()
            return
        self.upstream[a.token] = up
        on_read = lambda: self._on_upstream_read(up)      # noqa: E731
        if a.tcp:
            self.pump.watch(s, on_read, lambda: self._on_upstream_write(up))
            self.pump.want_write(s, True, on_read, lambda: self._on_upstream_write(up))
        else:
            self.pump.watch(s, on_read)

    def _on_upstream_write(self, up: _Upstream) -> None:
        if self.upstream.get(up.token) is not up:
            return
        assert self.pump is not None
        try:
            n = up.sock.send(up.outbuf)
            up.outbuf = up.outbuf[n:]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._failed(up.token)
            return
        if not up.outbuf:
            self.pump.want_write(up.sock, False, lambda: self._on_upstream_read(up), lambda: None)

    def _on_upstream_read(self, up: _Upstream) -> None:
        if self.upstream.get(up.token) is not up:
            return
        for _ in range(8):
            try:
                if up.tcp:
                    # One length-prefixed message at a time, the rest kept: a message the core
                    # does not take (another ID) must not shift the framing of the next (fuzz48:
                    # the whole buffer was dropped with it, and the real answer after it read
                    # from its middle).
                    if not _whole_message(up.inbuf):
                        data = up.sock.recv(16384)
                        if not data:
                            self._failed(up.token)
                            return
                        up.inbuf += data
                        if not _whole_message(up.inbuf):
                            return
                    (n,) = struct.unpack_from("!H", up.inbuf, 0)
                    data, peer = bytes(up.inbuf[2:2 + n]), up.server
                    del up.inbuf[:2 + n]
                else:
                    data, addr = up.sock.recvfrom(MAX_ANSWER)
                    peer = (addr[0], addr[1])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:              # ICMP unreachable, reset: this attempt failed now
                self._failed(up.token)
                return
            self._run(self.core.answer(up.token, peer, data, self._now()))
            if self.upstream.get(up.token) is not up:
                return
        if up.tcp and _whole_message(up.inbuf) and self.pump is not None:
            self.pump.again(up.sock, lambda: self._on_upstream_read(up))   # read already: no wake-up says so

    def _failed(self, token: int) -> None:
        self._close_upstream(token)
        self._run(self.core.failed(token, self._now()))

    def _close_upstream(self, token: int) -> None:
        up = self.upstream.pop(token, None)
        if up is not None:
            assert self.pump is not None
            self.pump.unwatch(up.sock)
            up.sock.close()

    # ---------------------------------------------------------------- the core's actions
    def _run(self, actions: list[dns_core.Action]) -> None:
        for a in actions:
            if isinstance(a, Reply):
                client = a.client
                if isinstance(client, _TcpClient):
                    self._reply_tcp(client, a.data)
                else:
                    sock, addr = client  # type: ignore[misc]
                    try:
                        sock.sendto(a.data, addr)
                    except OSError:
                        self.core.count("answer to the LAN not sent")
            elif isinstance(a, Send):
                self._open_upstream(a)
            elif isinstance(a, Done):
                self._close_upstream(a.token)
                if self.pump is not None:
                    self.pump.timers.cancel(("dns-up", a.token))
            elif isinstance(a, Log):
                log.warning("%s", a.text)
            elif isinstance(a, Close) and isinstance(a.client, _TcpClient):
                a.client.holding = False
                self._flush_client(a.client)
                self._close_client(a.client)

    def _log_counts(self, final: bool = False) -> None:
        """The counters that changed, at most every LOG_EVERY seconds (and once at the end)."""
        counts = dict(self.core.counts)
        if counts != self._logged and (final or counts):
            changed = {k: v for k, v in counts.items() if v != self._logged.get(k)}
            if changed:
                log.info("DNS forwarder%s: %s", " (final)" if final else "",
                         ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
            self._logged = counts
        if not final and self.pump is not None:
            self.pump.timers.arm(("dns", "log"), self._now() + LOG_EVERY, self._log_counts)

    def log_counters(self) -> None:
        """SIGUSR2: the counters now, in the periodic line's words, changed or not (the periodic
        line then waits for the next change)."""
        counts = dict(self.core.counts)
        log.info("DNS forwarder: %s", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing counted")
        self._logged = counts

    def stats(self) -> dict[str, int]:
        return dict(self.core.counts)
