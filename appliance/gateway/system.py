"""The real ports: sockets, the TUN device and the kernel's clock, for `vpn-appliance run`.

The gateways never create these themselves; the CLI and the appliance's PID 1 pass them in, and
lab/fakes.py passes in-memory ones instead.
"""
from __future__ import annotations

import socket
import time

from ..transport.tcp import TcpListener, TcpTransport
from ..transport.udp import UdpTransport
from ..tun.addr_watch import AddressWatch
from ..tun.route_watch import RouteWatch
from .loop import SelectorWaiter

clock = time.monotonic


class SystemPorts:
    """Sockets as ports (UDP with GSO/GRO where the kernel has them).

    `resolve` is the host's resolver, which may take seconds: the client calls it from a worker
    thread (gateway/resolver.py), as `resolves_slowly` says.

    `mark` (the profile's `mark N`: SO_MARK) and `bind_dev` (`bind-dev DEV`: SO_BINDTODEVICE) are
    set on each VPN socket before it is bound or connected, as OpenVPN 2.6 sets them when it
    creates its link socket (socket.c create_socket), so the kernel's route lookup for it already
    sees them (policy routing by fwmark, a VRF). One the kernel refuses fails that socket with the
    reason (the client tries again later), rather than sending without what the profile asked for.

    `mtu_disc` (`mtu-disc no|maybe|yes`: IP_PMTUDISC_DONT/WANT/DO) is set on each VPN socket too,
    UDP and TCP (a listener's accepted connections inherit it), as 2.6's set_mtu_discover_type:
    IP_MTU_DISCOVER on an IPv4 socket, IPV6_MTU_DISCOVER on an IPv6 one -- and IP_MTU_DISCOVER
    there as well, because an IPv6 socket's IPv4 peers (mapped addresses) go by that one (2.6
    leaves them at the kernel's default). None: the kernel's default (`maybe`-like for UDP, DF on
    TCP), as 2.6 without the directive.
    """

    resolves_slowly = True

    def __init__(self, mark: int = 0, bind_dev: str | None = None, mtu_disc: int | None = None) -> None:
        self.mark = mark
        self.bind_dev = bind_dev
        self.mtu_disc = mtu_disc

    @property
    def _own_socket(self) -> bool:
        """Whether a socket needs an option set before its bind or connect (else the transports
        make their own, as before)."""
        return bool(self.mark or self.bind_dev or self.mtu_disc is not None)

    def _socket(self, family: int, kind: int) -> socket.socket:
        s = socket.socket(family, kind)
        try:
            if self.mark:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
                except OSError as e:
                    raise OSError(e.errno, f"mark {self.mark} (SO_MARK) refused: {e.strerror}") from None
            if self.bind_dev:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.bind_dev.encode())
                except OSError as e:
                    raise OSError(e.errno, f"bind-dev {self.bind_dev} (SO_BINDTODEVICE) refused: {e.strerror}") \
                        from None
            if self.mtu_disc is not None:
                set_mtu_discover(s, family, self.mtu_disc)
        except OSError:
            s.close()
            raise
        return s

    @staticmethod
    def _family(host: str) -> int:
        return socket.AF_INET6 if ":" in host else socket.AF_INET

    def udp(self, local: tuple[str, int] | None, remote: tuple[str, int] | None,
            multihome: bool = False) -> UdpTransport:
        family = self._family((local or remote or ("0.0.0.0", 0))[0])
        sock = self._socket(family, socket.SOCK_DGRAM) if self._own_socket else None
        try:
            return UdpTransport(local, remote, family=family, multihome=multihome, sock=sock)
        except OSError:
            if sock is not None:
                sock.close()
            raise

    def tcp_connect(self, remote: tuple[str, int], local: tuple[str, int] | None = None) -> TcpTransport:
        if not (self._own_socket or local):
            return TcpTransport.connect(remote)
        sock = self._socket(self._family(remote[0]), socket.SOCK_STREAM)
        if local is not None:
            try:
                # A fixed local port is taken again at the next reconnect while the last
                # connection's TIME_WAIT lasts (OpenVPN sets it on its TCP sockets too).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(local)
            except OSError:
                sock.close()
                raise
        return TcpTransport.connect(remote, sock)

    def tcp_listen(self, local: tuple[str, int]) -> TcpListener:
        if not self._own_socket:
            return TcpListener(local)
        sock = self._socket(self._family(local[0]), socket.SOCK_STREAM)
        try:
            return TcpListener(local, sock=sock)
        except OSError:
            sock.close()
            raise

    def resolve(self, host: str, port: int, proto: str, family: str | None) -> list[tuple[str, int]]:
        """All of the name's addresses, IPv4 first unless the profile says udp6/tcp6: the client
        tries each before the next remote, as OpenVPN 2.6 steps through a name's addresses."""
        fam = socket.AF_INET6 if family == "6" else socket.AF_INET if family == "4" else socket.AF_UNSPEC
        infos = socket.getaddrinfo(host, port, fam, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
        infos.sort(key=lambda i: i[0] != socket.AF_INET)
        addrs = list(dict.fromkeys(tuple(i[4][:2]) for i in infos))
        if not addrs:
            raise OSError(f"cannot resolve {host}")
        return addrs

    def address_watch(self) -> AddressWatch:
        return AddressWatch()

    def route_watch(self) -> RouteWatch:
        return RouteWatch()


# <linux/in.h>, <linux/in6.h> (the socket module names neither)
IP_MTU_DISCOVER = 10
IPV6_MTU_DISCOVER = 23


def set_mtu_discover(s: socket.socket, family: int, mode: int) -> None:
    """`mtu-disc`'s mode on `s`; a refusal fails the socket naming the directive (2.6 stops with
    "Error setting IP_MTU_DISCOVER type=N")."""
    opts = [(socket.IPPROTO_IP, IP_MTU_DISCOVER, "IP_MTU_DISCOVER")]
    if family == socket.AF_INET6:
        opts.insert(0, (socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, "IPV6_MTU_DISCOVER"))
    for level, opt, name in opts:
        try:
            s.setsockopt(level, opt, mode)
        except OSError as e:
            raise OSError(e.errno, f"mtu-disc ({name} {mode}) refused: {e.strerror}") from None


def waiter() -> SelectorWaiter:
    return SelectorWaiter()
