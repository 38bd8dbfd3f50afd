"""`inactive N` on the server (gateway/inactivity.py) against a client that tries to keep itself
connected with packets that never reach the tunnel: inner packets from an address it does not
own, non-IP payloads, OCC messages. OpenVPN counts only what reaches or leaves the TUN, so such a
client is disconnected as idle; a client passing real traffic is kept. (A packet for another
client without client-to-client reaches the TUN, as in 2.6: traffic, tests/engine/test_client_to_client_off.py.)"""
from __future__ import annotations

import pytest

from appliance.openvpn.opcodes import OCC_MAGIC
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways

SERVER_TUN = "198.19.0.1"
N = 30


def _junk_spoofed(w: World) -> None:
    # The client's TUN hands the client a packet from an address that is not its own: the
    # client seals it, the server refuses it (anti-spoofing).
    w.client_nets[0].tun.inject(ipv4_udp("198.19.0.200", SERVER_TUN, b"x" * 100))


def _junk_not_ip(w: World) -> None:
    w.client_nets[0].tun.inject(b"\x10" + b"x" * 100)


def _junk_occ(w: World) -> None:
    s = w.clients[0].conn.session
    s._queue_data(OCC_MAGIC + b"\x00" + b"x" * 50)     # an OCC request (with padding)
    w.clients[0].conn.link.send_packets(s.take_outgoing())


@pytest.mark.parametrize("comp", ["", "comp-lzo no\n"])
@pytest.mark.parametrize("junk", [_junk_spoofed, _junk_not_ip, _junk_occ])
def test_packets_that_never_reach_the_tunnel_do_not_keep_a_client_connected(pki, caplog, junk, comp):
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"inactive {N}\n{comp}").replace("client-to-client\n", ""))
    w.add_client(client_conf(pki, "client0", extra=comp))
    assert w.run(lambda: _up(w, 0), max_time=30)
    rec = next(r for r in gw.d.clients if r.vaddr == w.client_addr(0))
    # Real traffic every N/3 seconds for 4N seconds: the client stays.
    for i in range(12):
        ping_both_ways(w, 0, tag=bytes([i]))
        w.run_for(N / 3)
    assert rec.alive, "a client passing traffic was disconnected"
    # Now only packets the server refuses (or OCC messages), at the same pace: it is idle.
    for _ in range(9):
        junk(w)
        w.run_for(N / 3)
        if not rec.alive:
            break
    assert not rec.alive, "packets that never reached the tunnel kept the client connected"
    assert "Inactivity timeout (--inactive): disconnected" in caplog.text
