"""A GRO-coalesced run read past a wake-up's limit (UdpTransport._spill) is handed out at the next
wake-ups, with no datagram waiting for the socket to become readable again: the server's
`_on_udp_read` re-arms itself through the pump (`Pump.again`) while datagrams wait. Without that,
the rest of a run sat until the next datagram arrived (for the last packets of a burst: until the
peer's keepalive). In memory (lab/fakes.py: the MemoryNet hands a run to the socket whole, as the
kernel does with UDP_GRO on); the real kernel's runs: tests/unit/test_udp_from_attacks.py."""
from __future__ import annotations

import appliance.gateway.server as server_mod
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf


def test_a_run_longer_than_a_wake_ups_share_is_handled_without_new_input(pki, monkeypatch):
    w = World(seed=3)
    w.net.gro = True
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    assert w.run(lambda: w.client_addr() is not None and w.server_net.tun is not None, max_time=60)
    assert w.server.udp.gro
    monkeypatch.setattr(server_mod, "BATCH", 4)      # a share of 4 datagrams per wake-up
    srv_sock = w.net.udp[(SERVER_IP, 1194)]
    # 20 equal packets into the client's tunnel; its datagrams to the server, taken off the
    # server's queue before the server reads them, go back in as one GRO run.
    srv_pump = w.server.pump
    w.pumps = lambda: [c.pump for c in w.clients]    # the server waits while the client sends
    for i in range(20):
        w.client_nets[0].tun.inject(ipv4_udp(w.client_addr(), "198.19.0.1", b"%04d" % i + bytes(100)))
    assert w.run(lambda: len(srv_sock.inbox) >= 20, max_time=5)
    data = [e for e in srv_sock.inbox if len(e[0]) == len(srv_sock.inbox[-1][0])]
    assert len(data) >= 20
    src = data[0][1]
    srv_sock.inbox[:] = [e for e in srv_sock.inbox if e not in data]
    w.net.inject_run((SERVER_IP, 1194), [e[0] for e in data], src)
    before = len(w.server_net.tun.written)
    # Only the server now, and no new input: the run must be handled in shares of 4.
    steps = 0
    while len(w.server_net.tun.written) - before < 20 and steps < 50:
        srv_pump.step(block=False)
        steps += 1
    got = [p for p in w.server_net.tun.written[before:] if p.endswith(bytes(100))]
    assert len(got) == 20, (len(got), steps)
    assert [p[-104:-100] for p in got] == [b"%04d" % i for i in range(20)]
    assert steps >= 5                                # 20 datagrams, 4 a wake-up
    assert not w.server.udp.has_spill


def test_the_client_handles_a_long_run_in_shares_without_new_input(pki, monkeypatch):
    """The client's side: `UdpLink.has_pending` makes `_on_link_read` come back through
    `Pump.again` while a run's rest waits in the transport."""
    import appliance.gateway.client as client_mod
    w = World(seed=4)
    w.net.gro = True
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    assert w.run(lambda: w.client_addr() is not None and w.server_net.tun is not None, max_time=60)
    monkeypatch.setattr(client_mod, "BATCH", 4)
    client = w.clients[0]
    cli_sock = next(s for s in w.net.udp.values() if s.remote == (SERVER_IP, 1194))
    w.pumps = lambda: [w.server.pump]               # the client waits while the server sends
    for i in range(20):
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", w.client_addr(), b"%04d" % i + bytes(100)))
    assert w.run(lambda: len(cli_sock.inbox) >= 20, max_time=5)
    data = [e for e in cli_sock.inbox if len(e[0]) == len(cli_sock.inbox[-1][0])]
    assert len(data) >= 20
    src = data[0][1]
    cli_sock.inbox[:] = [e for e in cli_sock.inbox if e not in data]
    w.net.inject_run(cli_sock.local, [e[0] for e in data], src)
    tun = w.client_nets[0].tun
    before = len(tun.written)
    steps = 0
    while len(tun.written) - before < 20 and steps < 50:
        client.pump.step(block=False)
        steps += 1
    got = [p for p in tun.written[before:] if p.endswith(bytes(100))]
    assert len(got) == 20, (len(got), steps)
    assert [p[-104:-100] for p in got] == [b"%04d" % i for i in range(20)]
    assert steps >= 5                                # 20 datagrams, 4 a wake-up
