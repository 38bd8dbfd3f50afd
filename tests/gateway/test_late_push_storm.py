"""A hostile server sending PUSH_REPLY after PUSH_REPLY once our client's tunnel is up, each
changing everything (address, routes, redirect-gateway, cipher, peer-id, timers), with
push-continuation or not, and an auth-token that changes every time.

OpenVPN 2.6's client processes a push only while it waits for one (push.c: a reply after its
options were applied is not applied again; the server's later pushes carry auth-token renewals).
Ours takes from a push after the tunnel is up its auth-token alone (roles.py text_message): the
tunnel stays as the first push made it, the client does not restart, and the newest token is the
one sent at the next renegotiation. Also a server repeating INFO messages: a few logged, the rest
counted (MAX_SERVER_INFO)."""
from __future__ import annotations

import logging

import pytest

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def _storm(w: World, make, n: int = 300, every: float = 0.2) -> None:
    (rec,) = w.server.d.clients
    s = rec.session
    for i in range(n):
        s._send_text(make(i), s._active_ks())
        s._flush(w.clock.t)
        w.run_for(every)


@pytest.mark.parametrize("continuation", ["", ",push-continuation 2"])
def test_pushes_after_the_tunnel_is_up_change_only_the_token(pki, continuation):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    before = w.client_nets[0].pushed
    cipher, peer_id = c.conn.session.cipher, c.conn.session.peer_id
    _storm(w, lambda i: (f"PUSH_REPLY,ifconfig 198.19.0.{i % 200 + 3} 255.255.255.0,topology net30,"
                         f"route 10.{i % 250}.0.0 255.255.0.0,redirect-gateway def1,route-ipv6 2001:db8:{i:x}::/48,"
                         f"cipher AES-128-CBC,peer-id {i + 7},ping 1,ping-restart 1,inactive 1,session-timeout 1,"
                         f"auth-token tok{i}{continuation}"))
    assert c.connections == 1 and c.result is None, "the client restarted or ended"
    after = w.client_nets[0].pushed
    assert after.ifconfig == before.ifconfig == ("198.19.0.2", "255.255.255.0")
    assert after.routes == before.routes == [] and after.redirect_gateway is None and after.routes_ipv6 == []
    assert (c.conn.session.cipher, c.conn.session.peer_id) == (cipher, peer_id)
    assert w.run(lambda: c.auth_token.token == "tok299", max_time=10), c.auth_token.token   # (the last in flight)
    ping_both_ways(w)


def test_a_server_repeating_info_messages_gets_a_few_lines(pki, caplog):
    caplog.set_level(logging.INFO)
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    _storm(w, lambda i: f"INFO,{'x' * 1000}-{i}")
    shown = caplog.text.count("message from the server (INFO)")
    assert 1 <= shown <= 20, shown
    assert c.connections == 1 and c.result is None
    ping_both_ways(w)
