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
from .loop import SelectorWaiter

clock = time.monotonic


class SystemPorts:
    """Sockets as ports (UDP with GSO/GRO where the kernel has them)."""

    def udp(self, local: tuple[str, int] | None, remote: tuple[str, int] | None,
            multihome: bool = False) -> UdpTransport:
        host = (local or remote or ("0.0.0.0", 0))[0]
        return UdpTransport(local, remote, family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                            multihome=multihome)

    def tcp_connect(self, remote: tuple[str, int]) -> TcpTransport:
        return TcpTransport.connect(remote)

    def tcp_listen(self, local: tuple[str, int]) -> TcpListener:
        return TcpListener(local)

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


def waiter() -> SelectorWaiter:
    return SelectorWaiter()
