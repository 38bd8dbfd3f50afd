"""`mtu-disc no|maybe|yes`: the path MTU discovery mode OpenVPN 2.6 sets on its link socket
(mtu.c set_mtu_discover_type: IP_MTU_DISCOVER, IPV6_MTU_DISCOVER on an IPv6 socket), on UDP and
TCP sockets alike; any other word stops the config at its line, as 2.6 stops ("invalid --mtu-disc
type"). Read back from the sockets themselves with getsockopt, on loopback (no root needed)."""
from __future__ import annotations

import socket
import time

import pytest

from appliance.gateway.system import IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, SystemPorts
from appliance.openvpn.config import ConfigError, parse_config

BASE = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"      # 5 lines
MODES = {"no": 0, "maybe": 1, "yes": 2}      # IP_PMTUDISC_DONT, _WANT, _DO


def _v4(s: socket.socket) -> int:
    return s.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER)


@pytest.mark.parametrize("word,mode", MODES.items())
def test_each_word_is_its_kernel_mode(word, mode):
    assert parse_config(BASE + f"mtu-disc {word}\n", "/p/c.ovpn").mtu_disc == mode
    assert parse_config(BASE, "/p/c.ovpn").mtu_disc is None


@pytest.mark.parametrize("line", ["mtu-disc YES", "mtu-disc 1", "mtu-disc on", "mtu-disc", "mtu-disc yes no"])
def test_anything_else_stops_the_config_at_its_line(line):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + line + "\n", "/p/c.ovpn")
    assert "/p/c.ovpn:6" in str(e.value) and "mtu-disc" in str(e.value)


@pytest.mark.parametrize("word,mode", MODES.items())
def test_the_mode_is_on_udp_and_both_tcp_sockets(word, mode):
    ports = SystemPorts(mtu_disc=mode)
    lst = ports.tcp_listen(("127.0.0.1", 0))
    udp = ports.udp(None, ("127.0.0.1", 9))
    tcp = ports.tcp_connect(lst.sock.getsockname()[:2])
    accepted = None
    try:
        for _ in range(100):                    # bounded: the connection is local
            try:
                accepted, _peer = lst.accept()
                break
            except BlockingIOError:
                time.sleep(0.01)
        assert accepted is not None
        # the server's connection inherits its listener's (as 2.6's accepted socket does)
        assert _v4(udp.sock) == _v4(tcp.sock) == _v4(lst.sock) == _v4(accepted.sock) == mode
    finally:
        for t in (udp, tcp, lst, accepted):
            if t is not None:
                t.close()


def test_an_ipv6_socket_gets_both_options():
    try:
        udp = SystemPorts(mtu_disc=0).udp(("::", 0), None)
    except OSError as e:                       # a host without IPv6
        pytest.skip(f"no IPv6 here: {e}")
    try:
        assert udp.sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER) == 0
        assert _v4(udp.sock) == 0              # its IPv4-mapped peers go by this one
    finally:
        udp.close()


def test_without_the_directive_the_kernel_default_stays():
    default = _v4(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    udp = SystemPorts().udp(None, ("127.0.0.1", 9))
    try:
        assert _v4(udp.sock) == default
    finally:
        udp.close()
