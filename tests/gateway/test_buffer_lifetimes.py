"""Buffer lifetimes on the packet path (review): TUN read_batch views are valid only until the next
read, Session.receive plaintexts only until that session's next receive. With PooledChannelTun
(lab/fakes.py) stale views read poison, so anything kept past its lifetime shows up here as a
corrupted or missing packet. These pass: they guard the rule, they are not findings."""
from __future__ import annotations

import pytest

from lab.fakes import FakeServerNet, FakeTunnelNetwork, PooledChannelTun
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_bursts_through_pooled_tun_buffers_arrive_intact(pki, monkeypatch, proto):
    monkeypatch.setattr(FakeServerNet, "tun_class", PooledChannelTun)
    monkeypatch.setattr(FakeTunnelNetwork, "tun_class", PooledChannelTun)
    w = World()
    w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp"))
    w.add_client(client_conf(pki, "client0", proto="tcp-client" if proto == "tcp" else "udp"))
    w.add_client(client_conf(pki, "client1", proto="tcp-client" if proto == "tcp" else "udp"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    a, b = w.client_addr(0), w.client_addr(1)
    ctun, c1tun, stun = w.client_nets[0].tun, w.client_nets[1].tun, w.server_net.tun
    for rnd in range(3):
        up = [ipv4_udp(a, SERVER_TUN, b"up-%d-%d" % (rnd, i) * (1 + i % 7)) for i in range(100)]
        down = [ipv4_udp(SERVER_TUN, a, b"down-%d-%d" % (rnd, i) * (1 + i % 5)) for i in range(100)]
        c2c = [ipv4_udp(a, b, b"c2c-%d-%d" % (rnd, i)) for i in range(100)]
        for p in up + c2c:
            ctun.inject(p)
        for p in down:
            stun.inject(p)
        want = [(stun, up), (ctun, down), (c1tun, c2c)]
        assert w.run(lambda: all(set(ps) <= set(t.written) for t, ps in want), max_time=10), \
            [len(set(ps) - set(t.written)) for t, ps in want]
    poisoned = [p for t in (stun, ctun, c1tun) for p in t.written if bytes([PooledChannelTun.POISON]) * 8 in p]
    assert not poisoned
