"""A client's IPv6 packet from a link-local source (fe80::/10: router solicitations, MLD, which
Windows and other hosts send on any interface): dropped, as OpenVPN 2.6 drops it without a log
line (multi.c, "do nothing, for now"; other sources it does not own get "bad source address").
Ours counted it as a spoof, and each one (every few minutes from a Windows client) made the
periodic "dropped packets" line appear where 2.6's log stays quiet. Now it is counted under its
own name, shown in a drop line that appears for other reasons, and never makes one appear."""
from __future__ import annotations

import logging

from appliance.gateway.loop import Faults
from appliance.openvpn.server import LINK_LOCAL_SOURCE, QUIET_DROPS
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_iroute_ipv6 import SPOOF, V6, _reaches_server6, ipv6_udp
from tests.gateway.test_tunnel import _up


def test_a_link_local_source_is_dropped_and_counted_under_its_own_name(pki):
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert not _reaches_server6(w, 0, "fe80::1234:5678", b"router-solicitation")
    assert not _reaches_server6(w, 0, "febf::1", b"link-local-top")
    assert not _reaches_server6(w, 0, "fd00:99:3::1", b"nobodys")      # a real spoof stays one
    counters = w.server.d.drop_counters()
    assert counters.get(LINK_LOCAL_SOURCE) == 2 and counters.get(SPOOF) == 1, counters
    assert w.server.faults.quiet == QUIET_DROPS


def test_without_server_ipv6_a_link_local_source_is_counted_the_same(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    own = w.client_nets[0].pushed.ifconfig[0]
    assert own
    w.client_nets[0].tun.inject(ipv6_udp("fe80::1", "ff02::2", b"rs"))
    assert w.run(lambda: w.server.d.drop_counters().get(LINK_LOCAL_SOURCE) == 1, max_time=5)
    assert "IPv6 inner packet (no server-ipv6)" not in w.server.d.drop_counters()


def test_link_local_drops_alone_never_make_a_drop_line_appear(caplog):
    f = Faults(5.0)
    f.quiet = QUIET_DROPS
    caplog.set_level(logging.INFO, logger="vpn-appliance")
    lines = lambda: [r.getMessage() for r in caplog.records if "dropped packets" in r.getMessage()]  # noqa: E731
    for i, now in enumerate((10.0, 20.0, 30.0), 1):
        f.maybe_log(now, {LINK_LOCAL_SOURCE: i})
    assert lines() == []
    f.maybe_log(40.0, {LINK_LOCAL_SOURCE: 4, SPOOF: 1})        # another drop: the line shows both
    assert len(lines()) == 1 and f"{LINK_LOCAL_SOURCE}=4" in lines()[0] and f"{SPOOF}=1" in lines()[0]
    f.maybe_log(50.0, {LINK_LOCAL_SOURCE: 9, SPOOF: 1})
    assert len(lines()) == 1
    f.maybe_log(60.0, {LINK_LOCAL_SOURCE: 9, SPOOF: 2})
    assert len(lines()) == 2
