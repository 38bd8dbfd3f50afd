"""The real ports: sockets, the TUN device and the kernel's clock, for `vpn-appliance run`.

The gateways never create these themselves; the CLI and the appliance's PID 1 pass them in, and
tests/fakes.py passes in-memory ones instead.
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
    """

    resolves_slowly = True

    def __init__(self, mark: int = 0, bind_dev: str | None = None) -> None:
        self.mark = mark
        self.bind_dev = bind_dev

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
        sock = self._socket(family, socket.SOCK_DGRAM) if self.mark or self.bind_dev else None
        try:
            return UdpTransport(local, remote, family=family, multihome=multihome, sock=sock)
        except OSError:
            if sock is not None:
                sock.close()
            raise

    def tcp_connect(self, remote: tuple[str, int], local: tuple[str, int] | None = None) -> TcpTransport:
        if not (self.mark or self.bind_dev or local):
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
        if not (self.mark or self.bind_dev):
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


def waiter() -> SelectorWaiter:
    return SelectorWaiter()
