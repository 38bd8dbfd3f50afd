"""Where the local port (the last `port`/`lport` line's, compat50) is used: the server's socket,
a bound client's socket, the client's `local_port_N` variable. Each one's own check, without a
socket, so that each use reverted to `lport or port` fails here and not only in the interop
files (tests/interop/test_client_local_bind_vs_openvpn.py proves the values against 2.6.14)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.gateway.client import ClientGateway
from appliance.gateway.server import ServerGateway
from appliance.gateway.updown_env import settings_env
from appliance.openvpn.config import parse_config

SERVER = "dev tun\nserver 198.18.61.0 255.255.255.0\ndh none\nca c\ncert c\nkey k\n"
CLIENT = "client\ndev tun\nca c\ncert c\nkey k\nremote 198.18.60.9\n"


@pytest.mark.parametrize("lines, port", [("port 1194\nrport 1200", 1194), ("rport 1200", 1194),
                                         ("lport 1195\nport 1196", 1196), ("port 1196\nlport 1195", 1195)])
def test_the_server_binds_the_last_port_or_lport(lines, port):
    o = parse_config(SERVER + lines + "\n", "/p/s.conf", lambda p: b"x")
    assert ServerGateway.bind_addr(SimpleNamespace(opts=o)) == ("0.0.0.0", port)


@pytest.mark.parametrize("lines, port", [("local 198.18.60.2\nlport 1195\nport 1196", 1196),
                                         ("lport 1195\nport 1196", 1196), ("port 1196\nlport 1195", 1195),
                                         ("local 198.18.60.2\nport 1196\nrport 1197", 1196)])
def test_a_bound_client_binds_the_last_port_or_lport_and_names_it(lines, port):
    o = parse_config(CLIENT + lines + "\n", "/p/c.ovpn", lambda p: b"x")
    local = ClientGateway._local_for(SimpleNamespace(entry=o), ("198.18.60.9", 1194))
    assert local is not None and local[1] == port
    if "lport" in lines:
        assert settings_env(o, 0.0)["local_port_1"] == str(port)


@pytest.mark.parametrize("tcp", [False, True])
def test_lport_0_logs_the_port_the_kernel_chose(tcp):
    """A server with `lport 0` listens on a port the kernel chooses: its "listening on" line says
    which (it said ":0", as 2.6's log does, which no client can be pointed at)."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = SimpleNamespace(sock=sock)
        gw = SimpleNamespace(st=SimpleNamespace(tcp=tcp), listener=port if tcp else None, udp=None if tcp else port)
        assert ServerGateway._bound(gw, ("127.0.0.1", 0)) == ("127.0.0.1", sock.getsockname()[1]) != ("127.0.0.1", 0)
        assert ServerGateway._bound(gw, ("127.0.0.1", 1194)) == ("127.0.0.1", 1194)
    finally:
        sock.close()
