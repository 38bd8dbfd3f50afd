"""The client opens its TUN device ahead of PUSH_REPLY, at the first moment after TLS completed when
nothing waits to be read (gateway/client.py _prepare_tun, TunnelNetwork.prepare): the device
creation overlaps the server's key exchange and push instead of delaying the first packet, and
never delays an answer the server waits for. In memory, real pumps on both sides."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf


def _tls_done(c) -> bool:
    s = c.conn.session if c.conn is not None else None
    return s is not None and any(ks.tls is not None and ks.tls.handshake_done for ks in s.keys.values())


def test_the_tun_opens_while_the_server_works_before_the_push_and_once(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    net = w.client_nets[0]
    calls: list[str] = []
    prepare, apply = net.prepare, net.apply
    net.prepare = lambda: (calls.append("prepare"), prepare())[1]
    net.apply = lambda pushed, ip: (calls.append("apply"), apply(pushed, ip))[1]
    assert w.run(lambda: _tls_done(c), max_time=30), "TLS did not complete"
    assert net.tun is None and calls == []
    # The server has not answered our key-method message yet: the client's next wake-up finds
    # nothing to read, and that is when the device opens.
    c.pump.step(block=False)
    assert calls == ["prepare"] and net.tun is not None
    assert not c.conn.was_up and not (c.conn.session.pushed and c.conn.session.pushed.complete)
    tun = net.tun
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert calls == ["prepare", "apply"] and net.tun is tun
    # a renegotiation (a new TLS handshake on the same connection) opens nothing more
    c.conn.session.renegotiate(w.clock.t)
    c._after_engine(c.conn)
    assert w.run(lambda: c.counters.renegotiations >= 1, max_time=30), "no renegotiation"
    assert net.tun is tun and calls.count("prepare") == 1


def test_a_push_that_comes_first_opens_the_tun_itself(pki):
    """No idle moment between TLS and the push (our server pushes with its key-method message):
    apply() opens the device, and the queued early opening does nothing afterwards."""
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    net = w.client_nets[0]
    calls: list[str] = []
    prepare, apply = net.prepare, net.apply
    net.prepare = lambda: (calls.append("prepare"), prepare())[1]
    net.apply = lambda pushed, ip: (calls.append("apply"), apply(pushed, ip))[1]
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    for _ in range(3):
        c.pump.step(block=False)
    assert calls == ["apply"] and net.tun is not None
