"""`mark N` and `bind-dev DEV` on the real VPN sockets (gateway/system.py SystemPorts): set before
the socket is connected or bound, on UDP, TCP connect and TCP listen alike; one the kernel refuses
fails that socket naming the directive, instead of a socket sent without it. Needs root (SO_MARK
takes CAP_NET_ADMIN); runs in a namespace of its own (test_rtnl.py's)."""
from __future__ import annotations

import socket

import pytest

from appliance.gateway.system import SystemPorts
from tests.unit.test_rtnl import inside, ns  # noqa: F401 - fixtures

pytestmark = [pytest.mark.root, pytest.mark.netns]


def _opts(sock: socket.socket) -> tuple[int, bytes]:
    return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0"))


def test_mark_and_bind_dev_are_on_every_vpn_socket(inside):
    ports = SystemPorts(mark=4096, bind_dev="wan")
    udp = ports.udp(None, ("198.18.60.9", 1194))
    tcp = ports.tcp_connect(("198.18.60.9", 1194))
    lst = ports.tcp_listen(("0.0.0.0", 0))
    try:
        assert _opts(udp.sock) == _opts(tcp.sock) == _opts(lst.sock) == (4096, b"wan")
    finally:
        for t in (udp, tcp, lst):
            t.close()


def test_without_them_the_sockets_are_as_before(inside):
    udp = SystemPorts().udp(None, ("198.18.60.9", 1194))
    try:
        assert _opts(udp.sock) == (0, b"")
    finally:
        udp.close()


def test_a_device_the_host_lacks_fails_the_socket_naming_bind_dev(inside):
    with pytest.raises(OSError) as e:
        SystemPorts(bind_dev="nosuchdev0").udp(None, ("198.18.60.9", 1194))
    assert "bind-dev nosuchdev0 (SO_BINDTODEVICE) refused" in str(e.value)
