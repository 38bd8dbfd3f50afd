"""A push of many routes writes a bounded number of log lines (gateway/tunnel.py _route_line).

Why: a server pushing ~1,000 routes (here inside the LAN, each skipped) wrote a line for each at
every push that differed from the last, on the VM to its serial console; a hostile server
alternating two such pushes with `ping-restart 1` kept that up every couple of seconds.
"""
from __future__ import annotations

import ipaddress
import logging

from appliance.gateway.tunnel import MAX_ROUTE_LINES, TunnelNetwork
from appliance.openvpn.keymethod import PushedOptions


class _Opts:
    dev_type = "tun"
    redirect_gateway = None
    redirect_private = None
    route_nopull = False


class _Tun:
    name = "tun0"


def test_a_thousand_pushed_routes_give_a_bounded_number_of_lines(caplog):
    net = TunnelNetwork.__new__(TunnelNetwork)
    net.opts, net.tun, net.routes, net.block_ipv6 = _Opts(), _Tun(), object(), False
    net.lan_nets = [ipaddress.ip_network("198.18.50.0/24")]
    pushed = PushedOptions(ifconfig=("198.19.0.2", "255.255.255.0"),
                           routes=[(f"198.18.50.{i % 250 + 2}", "255.255.255.255", None, None) for i in range(1000)])
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        net._pushed_routes(pushed, "198.18.0.1", None, None, False)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == MAX_ROUTE_LINES + 1, len(lines)
    assert "inside the LAN's network 198.18.50.0/24" in lines[0]
    assert lines[-1] == f"{1000 - MAX_ROUTE_LINES} more lines about pushed routes not shown (1000 route and route-ipv6 pushed)"
    # The next push counts afresh.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        net._pushed_routes(PushedOptions(ifconfig=pushed.ifconfig, routes=pushed.routes[:3]), "198.18.0.1",
                           None, None, False)
    assert len(caplog.records) == 3
