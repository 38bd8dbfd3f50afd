"""The client opens its TUN device when the TLS handshake with the server completes, not after
PUSH_REPLY (gateway/tunnel.py TunnelNetwork.prepare): the device creation overlaps the server's key
exchange and push instead of delaying the first packet. In memory, real pumps on both sides."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf


def test_the_tun_opens_after_tls_before_the_push_and_once(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    net = w.client_nets[0]
    calls: list[tuple[str, bool, bool]] = []
    prepare, apply = net.prepare, net.apply

    def rec_prepare():
        s = c.conn.session
        calls.append(("prepare", any(ks.tls is not None and ks.tls.handshake_done for ks in s.keys.values()),
                      s.pushed is not None and s.pushed.complete))
        prepare()

    def rec_apply(pushed, remote_ip):
        calls.append(("apply", True, True))
        apply(pushed, remote_ip)
    net.prepare, net.apply = rec_prepare, rec_apply
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert calls == [("prepare", True, False), ("apply", True, True)], calls
    tun = net.tun
    # a renegotiation (a new TLS handshake on the same connection) opens nothing more
    c.conn.session.renegotiate(w.clock.t)
    c._after_engine(c.conn)
    assert w.run(lambda: c.counters.renegotiations >= 1, max_time=30), "no renegotiation"
    assert net.tun is tun and [k for k, _, _ in calls].count("prepare") == 1
