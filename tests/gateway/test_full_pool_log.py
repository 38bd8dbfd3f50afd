"""The server's line for a client let in to a full pool with no address (compat42, as 2.6), read
again by review44a: its "connected" line said `address None` (Python's word for nothing); now
`address none`, and a client with only an IPv6 address is shown with that one."""
from __future__ import annotations

import logging

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_client_let_in_with_no_address_is_logged_so(pki, caplog):
    w = World()
    w.add_server(server_conf(pki, extra="ifconfig-pool 198.19.0.2 198.19.0.3\n", nopool=True))
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        for i in range(3):
            w.add_client(client_conf(pki, f"client{i}"))
            assert w.run(lambda: len([r for r in w.server.d.clients if r.session.established]) == i + 1,
                         max_time=30), caplog.text[-2000:]
        assert _up(w, 0) and _up(w, 1)
    lines = [r.getMessage() for r in caplog.records if ": connected, address " in r.getMessage()]
    assert [ln.split(": connected, address ")[1].split(",")[0] for ln in lines] == ["198.19.0.2", "198.19.0.3",
                                                                                     "none"], lines
