"""Where a client's socket is bound (ClientGateway._local_for), as OpenVPN 2.6's client: an
ephemeral port unless the profile says `local`, `lport` or `bind` (then `local`, else any
address, and `lport`, else `port`); any of them with `nobind` is refused at its line, as there.
tests/interop/test_client_local_bind_vs_openvpn.py shows Debian's server seeing the port."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


@pytest.mark.parametrize("extra,proto,want", [
    ("", "udp", None),
    ("lport 50000\n", "udp", ("0.0.0.0", 50000)),
    ("local 198.18.0.2\n", "udp", ("198.18.0.2", 1194)),
    ("port 1195\nbind\n", "udp", ("0.0.0.0", 1195)),
    ("local 198.18.0.2\nlport 50001\n", "tcp", ("198.18.0.2", 50001)),
])
def test_the_socket_is_bound_where_the_profile_says(pki, extra, proto, want):
    w = World()
    w.add_server(server_conf(pki, proto=proto))
    base = client_conf(pki, proto=proto).replace("nobind\n", "")
    c = w.add_client(base + extra)
    assert w.run(lambda: _up(w, 0), max_time=30)
    if proto == "udp":
        local = c.ports.udp_sockets[-1].local
        assert c._local_for(("198.18.0.1", 1194)) == want
        if want is None:
            assert local[1] not in (1194, 1195, 50000)          # the fake network's ephemeral port
        else:
            assert local == (want[0] if want[0] != "0.0.0.0" else "198.18.0.2", want[1])
    else:
        assert c.ports.tcp_locals[-1] == want


@pytest.mark.parametrize("line", ["local 198.18.0.2", "lport 4000", "bind"])
def test_nobind_with_a_local_address_or_port_is_refused(pki, line):
    text = client_conf(pki) + ("" if "nobind" in client_conf(pki) else "nobind\n") + line + "\n"
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "/mem/c.ovpn")
    assert f": {line.split()[0]}: and nobind don't make sense" in str(ei.value)


def test_bind_ipv6only_is_refused_rather_than_ignored(pki):
    with pytest.raises(ConfigError) as ei:
        parse_config(server_conf(pki) + "bind ipv6only\n", "/mem/s.conf")
    assert ": bind: ipv6only is not supported" in str(ei.value)
