"""Two OpenVPN 2.6 directives that act on the running tunnel (config/d_seldom.py): `max-packet-size`
bounds every control-channel packet each side sends (the handshake's certificates split finer),
and `ifconfig-push-constraint` logs a client whose address lies outside it -- and admits it, as
OpenVPN 2.6 does (multi.c)."""
from __future__ import annotations

import logging

from appliance.openvpn.opcodes import CONTROL_OPS, OPCODE_SHIFT
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_inner_address_ownership import _ccd
from tests.gateway.test_tunnel import _up, ping_both_ways


def _control_sizes(w: World) -> dict[str, list[int]]:
    """The size of every control packet on the wire, by sender (server / client)."""
    real, seen = w.net.deliver, {"server": [], "client": []}

    def deliver(data, src, dst):
        if data and (data[0] >> OPCODE_SHIFT) in CONTROL_OPS:
            seen["server" if src[0] == SERVER_IP else "client"].append(len(data))
        real(data, src, dst)
    w.net.deliver = deliver
    return seen


def test_max_packet_size_bounds_each_sides_control_packets(pki):
    w = World()
    sizes = _control_sizes(w)
    w.add_server(server_conf(pki, extra="max-packet-size 300\n"))
    w.add_client(client_conf(pki, extra="max-packet-size 200\n"))
    assert w.run(lambda: _up(w, 0), max_time=60)
    ping_both_ways(w)
    assert sizes["client"] and max(sizes["client"]) <= 200, sizes["client"]
    assert sizes["server"] and max(sizes["server"]) <= 300, sizes["server"]
    # The certificates went out in more packets than the default 1250 needs.
    assert len(sizes["server"]) > 8


def test_ifconfig_push_constraint_logs_an_address_outside_and_admits_the_client(pki, tmp_path, caplog):
    w = World()
    w.add_server(server_conf(pki, extra="ifconfig-push-constraint 198.19.0.0 255.255.255.128\n"))
    _ccd(w, tmp_path, {"client0": "ifconfig-push 198.19.0.200 255.255.255.0\n"})
    with caplog.at_level(logging.INFO):
        w.add_client(client_conf(pki, "client0"))
        w.add_client(client_conf(pki, "client1"))
        assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=60)
    assert w.client_addr(0) == "198.19.0.200"
    said = [r.getMessage() for r in caplog.records if "violates tunnel network/netmask constraint" in r.getMessage()]
    assert len(said) == 1 and "client0 (198.19.0.200)" in said[0] and "198.19.0.0/255.255.255.128" in said[0], said
