"""A push the client's own MTU cannot take (gateway/push_fatal.py, compat42) ends the run saying
whose MTU it was, read again by review44a: a <connection> block's `tun-mtu` is the profile's own,
never "the pushed tun-mtu" (the client hands the entry's MTU to the device as if pushed, and the
check read it back as the server's), and the server's own push of one is named the server's."""
from __future__ import annotations

import logging

import pytest

from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf


def _ends(pki, caplog, client_extra: str, server_extra: str = "") -> str:
    w = World()
    w.add_server(server_conf(pki, extra="server-ipv6 2001:db8:44::/64\n" + server_extra))
    conf = client_conf(pki, extra=client_extra)
    if "<connection>" in client_extra:
        conf = conf.replace(f"remote {SERVER_IP} 1194\n", "", 1)     # (the block has it)
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        c = w.add_client(conf)
        assert w.run(lambda: c.result is not None, max_time=30), "the client did not end"
        c._logs.write()             # (the lines held while the push was handled: the run's clean-up writes them)
    assert c.result == 1, caplog.text[-3000:]
    (line,) = [r.getMessage() for r in caplog.records if "the server pushed ifconfig-ipv6" in r.getMessage()]
    return line


def test_a_connection_blocks_tun_mtu_is_named_as_the_profiles_line(pki, caplog):
    block = f"<connection>\nremote {SERVER_IP} 1194\ntun-mtu 1200\n</connection>\n"
    why = _ends(pki, caplog, block)
    assert "pushed tun-mtu" not in why and "this profile's TUN MTU 1200 (/mem/client.ovpn:" in why, why


@pytest.mark.parametrize("client_extra", ["", "tun-mtu 1400\n"])
def test_the_servers_own_tun_mtu_push_is_named_the_servers(pki, caplog, client_extra):
    why = _ends(pki, caplog, client_extra, server_extra='push "tun-mtu 1200"\n')
    assert "the pushed tun-mtu 1200" in why, why
