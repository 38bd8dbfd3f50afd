"""A TCP client whose reading stalls while the server has much to send it.

The server's write queue per connection is bounded (transport/tcp.py): beyond it, whole writes
are dropped. Data may go (the inner TCP resends, as OpenVPN's tcp-queue-limit drops tunnel
packets); control packets may not: over TCP our reliability layer does not retransmit (the
stream loses nothing), so a dropped soft reset or TLS record was gone for good, the
renegotiation missed hand-window and the session ended (over TCP that is fatal, as in OpenVPN).
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.transport.link import TcpLink
from appliance.transport.tcp import CONTROL_ROOM, MAX_QUEUE, TcpTransport
from lab.fakes import MemoryListenSocket, MemoryNet, stream_connect
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_faults import served


def test_a_renegotiation_while_a_tcp_client_reads_slowly_completes(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="reneg-sec 20\nhand-window 10"))
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)
    rec = w.server.d.clients[0]
    session = rec.session
    renegotiated = []
    w.server.ops.on_event = (lambda orig: lambda r, e: (renegotiated.append(e.key_id)
                                                        if isinstance(e, ev.KeyRenegotiated) else None,
                                                        orig(r, e))[1])(w.server.ops.on_event)
    server_end = w.client_ports[0].streams[-1].peer
    link = next(iter(w.server.conns.values()))
    t0 = session.keys[0].active_since           # reneg-sec counts from here
    w.run_for(t0 + 15 - w.clock.t)
    server_end.window = 0                      # the client stops reading for a while ...
    for i in range(600):                       # ... while a download fills the server's queue
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", w.client_addr(), bytes([i % 256]) * 1200))
        if i % 64 == 0:
            w.run_for(0.01)
    assert link.t.stats["dropped"] > 0         # the queue is full: data is being dropped
    w.run_for(t0 + 22 - w.clock.t)                  # reneg-sec comes meanwhile
    server_end.window = 1 << 30                # the client reads again
    w.run_for(t0 + 45 - w.clock.t)                  # past hand-window of that renegotiation
    assert w.server.d.clients and w.server.d.clients[0].session is session, \
        f"the session ended: {[e for e in w.server.faults.counts]}"
    assert renegotiated, "no renegotiation completed"
    served(w, tag=b"after")


def test_control_packets_to_a_peer_that_never_reads_are_bounded_too():
    """The room kept for control packets is bounded: a peer that never reads but keeps sending
    control packets (each acked by us) cannot grow the queue without end."""
    net = MemoryNet(1)
    MemoryListenSocket(net, ("198.18.0.1", 1194)).bind(("198.18.0.1", 1194))
    client = stream_connect(net, "198.18.0.2", ("198.18.0.1", 1194))
    client.window = 0                                # our end's sends all find the peer full
    link = TcpLink(TcpTransport(client))
    ack = bytes([5 << 3]) + bytes(40)                # an ACK_V1-sized control packet
    data = bytes([9 << 3]) + bytes(1300)             # a P_DATA_V2-sized one
    for _ in range(2000):
        link.send_packets([data] * 4 + [ack])
    assert link.t.stats["dropped"] > 0
    assert MAX_QUEUE < link.t.queued <= MAX_QUEUE + CONTROL_ROOM
