"""55bb3260 (CVE-2024-28882): OpenVPN's server scheduled a killed client's end anew at each exit
notification the client sent, so a client that kept sending them after management's
`client-kill` kept its session (and address) for ever. Ours: the end of a client-kill'ed session
is set once, CLIENT_KILL_WAIT after the command, whatever the client sends meanwhile; a client's
own exit notification ends its session at once, and what it sends after it revives nothing.

A hostile client on the in-memory pumps: it never acknowledges the kill message (the server's
control packets to it are lost) and keeps busy with tunnel data and renegotiations; exit
notifications, OpenVPN's reason to wait again, end its session here at once.
"""
from __future__ import annotations

from appliance.gateway.ops import CLIENT_KILL_WAIT
from appliance.openvpn.opcodes import OCC_EXIT, OCC_MAGIC, Op
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"
CONTROL_TO_CLIENT = {Op.CONTROL_V1, Op.ACK_V1, Op.CONTROL_SOFT_RESET_V1}


def _lose_control_to(w: World, ip: str) -> None:
    """Every control packet the server sends to `ip` is lost: the kill message never gets its ack."""
    deliver = w.net.deliver

    def lossy(data, src, dst):
        if dst[0] == ip and data[0] >> 3 in CONTROL_TO_CLIENT:
            return
        deliver(data, src, dst)
    w.net.deliver = lossy


def test_a_killed_client_cannot_stay_by_keeping_busy(pki):
    w = World()
    gw = w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up and w.client_addr() is not None, max_time=30)
    inf = next(iter(gw.ops.info.values()))
    rec = inf.rec
    vaddr = w.client_addr()
    _lose_control_to(w, w.client_ports[0].ip)
    ended: list[float] = []
    kick = gw.d.kick
    gw.d.kick = lambda r, now, why: (ended.append(now) if r is rec else None, kick(r, now, why))[1]
    t0 = w.clock.t
    assert gw.ops.client_kill(inf.cid, "RESTART")
    n = 0
    while rec.alive and w.clock.t < t0 + 3 * CLIENT_KILL_WAIT:
        # Busy: data through the tunnel and a renegotiation now and then.
        w.client_nets[0].tun.inject(ipv4_udp(vaddr, SERVER_TUN, b"still here %d" % n))
        s = c.conn.session
        if n % 4 == 0 and not s.closed:
            s.renegotiate(w.clock.t)
            c.conn.link.send_packets(s.take_outgoing())
        w.run_for(0.25)
        n += 1
    assert not rec.alive, "the killed client kept its session"
    assert ended == [t0 + CLIENT_KILL_WAIT], (ended, t0)
    assert n >= 4, "the client was not busy during the wait"
    assert rec not in gw.d.clients


def test_a_client_exit_notification_ends_it_at_once_and_nothing_after_revives_it(pki):
    """What OpenVPN's fix is about, from the client's side: its exit notifications (an OCC exit,
    then more of them and data under the same session) must not keep or bring back a session
    OpenVPN would have ended after its scheduled-exit wait. Ours ends it at the first one and
    returns its address; the later packets are dropped."""
    w = World()
    gw = w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, extra="connect-retry 60 60"))
    assert w.run(lambda: c.conn is not None and c.conn.was_up and w.client_addr() is not None, max_time=30)
    rec = next(iter(gw.ops.info.values())).rec
    vaddr = w.client_addr()
    s = c.conn.session
    s._queue_data(OCC_MAGIC + bytes((OCC_EXIT,)))
    c.conn.link.send_packets(s.take_outgoing())
    w.run_for(0.1)
    assert not rec.alive and rec not in gw.d.clients
    for n in range(20):
        s._queue_data(OCC_MAGIC + bytes((OCC_EXIT,)))
        c.conn.link.send_packets(s.take_outgoing() + [s.encrypt(ipv4_udp(vaddr, SERVER_TUN, b"x%d" % n))])
        w.run_for(0.5)
    assert gw.d.clients == [] and gw.d.route(vaddr) is None
