"""fuzz45's finding, fixed by forge48: a holder of the shared tls-crypt (or tls-auth) key who sees
a connected peer's packets cannot end that peer's session with forged control packets.

The key is shared, so its holder opens the peer's control packets (session ids and message ids
are inside the wrapping) and wraps one of its own: P_CONTROL_V1 of that session, the next message
id of a key, a packet id the receiver has not seen, from the peer's address, carrying bytes that
are no TLS record. TLS fails on them. OpenVPN 2.6 ends the whole session then (ssl.c
tls_multi_process), and so did we: the client was gone at once and came back at its
ping-restart. Now (Session._contain_tls_failure) a key whose handshake was done keeps its data
keys -- which the forger does not have -- and a renegotiation replaces its TLS; a renegotiation
whose TLS fails is that renegotiation's failure only (the key in use goes on, a new one is tried
RECOVERY_EVERY later). Cases: the active key on the server and on our client, during a
renegotiation, repeated forgeries (bounded), tls-auth. The same against Debian's 2.6.14 client:
tests/interop/test_key_holder_forgery_vs_openvpn.py.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import session as session_mod
from appliance.openvpn.keystate import KS
from lab.control_forger import JUNK, ControlView, wrappers
from lab.gateway_world import SERVER_IP, STATIC_KEY
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import ping_both_ways

KEY = bytes(range(256))         # lab/gateway_world.py's STATIC_KEY, the server's and clients' key
BROKEN = "TLS failed on an established key (its data channel kept)"
RECOVERY = "renegotiation to replace a failed TLS"
TLS_AUTH = f"<tls-auth>\n{STATIC_KEY}\n</tls-auth>\n"


def _world(pki, protection: str = "tls-crypt", clients: int = 2, client_extra: str = ""):
    """A server and `clients` clients, connected; every datagram recorded (data, src, dst)."""
    w = World()
    wire: list[tuple[bytes, tuple, tuple]] = []
    real = w.net.deliver

    def deliver(data, src, dst):
        h = w.hold
        if h is not None and (tuple(src), tuple(dst)) == h[:2] and data[0] == (4 << 3) | h[2]:
            return                      # P_CONTROL_V1 of the held key id: lost on the way
        wire.append((bytes(data), tuple(src), tuple(dst)))
        real(data, src, dst)
    w.hold = None                       # (src, dst, key id): that key's TLS records from src are lost
    w.forged = real                     # the forger's own datagrams: never held
    w.net.deliver = deliver
    if protection == "tls-auth":
        gw = w.add_server(server_conf(pki, protection="none", extra=TLS_AUTH + "key-direction 0\n"))
        conf = [client_conf(pki, f"client{i}", protection="none", extra=TLS_AUTH + "key-direction 1\n")
                for i in range(clients)]
    else:
        gw = w.add_server(server_conf(pki))
        conf = [client_conf(pki, f"client{i}", extra=client_extra) for i in range(clients)]
    for c in conf:
        w.add_client(c)
    assert w.run(lambda: all(c.conn is not None and c.conn.was_up for c in w.clients)
                 and sum(r.session.established for r in gw.d.clients) == clients, max_time=60)
    return w, gw, wire


def _forge(w, wire, src: tuple, dst: tuple, payload: bytes = JUNK, protection: str = "tls-crypt",
           key_id: int | None = None, pid_ahead: int = 1) -> int:
    """What the key holder sends in the name of `src` to `dst` (tests/fuzz/contain_targets.py's op
    4; lab/control_forger.py ControlView): read from the wire what `src` sent -- its session id,
    the newest key id (or `key_id`) and its highest message id there, its highest packet id --
    and send P_CONTROL_V1 with the next message id and a packet id `pid_ahead` past src's (or
    past its own last forgery's). Returns the key id forged on."""
    view = ControlView(*wrappers(KEY, protection, from_server=src[0] == SERVER_IP))
    for pkt, s, d in wire:
        if s == src and d == dst:
            view.see(pkt, w.clock())
    forged, kid, _ = view.forge(w.clock(), payload, key_id, pid_ahead)
    wire.append((forged, src, dst))     # its next forgery goes on from this one's ids
    w.forged(forged, src, dst)
    return kid


def _victim(gw, name: str = "client0"):
    return next(r for r in gw.d.clients if r.common_name == name)


def _renegotiated_since(s, key_id: int) -> bool:
    """A key other than `key_id` is the one `s` sends with, and the session is whole."""
    return (not s.closed and s.send_key is not None and s.send_key.key_id != key_id
            and not any(k.tls_broken and k.retired_at is None for k in s.keys.values()))


def test_a_key_holders_forged_control_packet_leaves_the_client_connected(pki):
    """fuzz45's reproducer as it was (its packet ids a million ahead of the client's)."""
    w, gw, wire = _world(pki)
    rec = _victim(gw)
    victim, conn = rec.addr, w.clients[0].conn
    _forge(w, wire, victim, (SERVER_IP, 1194), pid_ahead=1_000_000)
    w.run_for(1)
    assert gw.d.by_addr.get(victim) is rec and rec.session.established and not rec.session.closed, \
        f"client0's session ended by the forgery ({gw.d.drop_counters()})"
    assert w.clients[0].conn is conn
    assert rec.session.stats.get(BROKEN) == 1
    ping_both_ways(w, 0, b"after")
    assert not gw.d.take_internal_errors()


@pytest.mark.parametrize("protection", ["tls-crypt", "tls-auth"])
def test_forgery_on_the_active_key_is_replaced_by_a_renegotiation(pki, protection):
    """The server's key: its data goes on, its TLS is dropped and the server renegotiates at once;
    the new key carries the tunnel, client and record unchanged."""
    w, gw, wire = _world(pki, protection)
    rec = _victim(gw)
    s, conn = rec.session, w.clients[0].conn
    kid = _forge(w, wire, rec.addr, (SERVER_IP, 1194), protection=protection)
    w.run(lambda: s.stats.get(BROKEN), max_time=2)
    assert s.stats.get(BROKEN) == 1 and not s.closed
    ping_both_ways(w, 0, b"during")
    assert w.run(lambda: _renegotiated_since(s, kid) and _renegotiated_since(conn.session, kid), max_time=30), \
        f"no renegotiation replaced the broken key ({s.stats})"
    assert s.stats.get(RECOVERY) == 1
    assert gw.d.by_addr.get(rec.addr) is rec and w.clients[0].conn is conn
    ping_both_ways(w, 0, b"after")
    assert not gw.d.take_internal_errors()


def test_forgery_to_our_client_is_contained_the_same_way(pki):
    """The forger writes as the server to our client: the client keeps its tunnel and
    renegotiates (a client-started soft reset)."""
    w, gw, wire = _world(pki, clients=1)
    rec = _victim(gw)
    conn = w.clients[0].conn
    cs = conn.session
    kid = _forge(w, wire, (SERVER_IP, 1194), rec.addr)
    w.run(lambda: cs.stats.get(BROKEN), max_time=2)
    assert cs.stats.get(BROKEN) == 1 and not cs.closed
    ping_both_ways(w, 0, b"during")
    assert w.run(lambda: _renegotiated_since(cs, kid) and _renegotiated_since(rec.session, kid), max_time=30)
    assert cs.stats.get(RECOVERY) == 1 and w.clients[0].conn is conn and conn.session is cs
    assert gw.d.by_addr.get(rec.addr) is rec
    ping_both_ways(w, 0, b"after")


@pytest.mark.parametrize("side", ["server", "client"])
def test_forgery_during_a_renegotiation_fails_that_renegotiation_only(pki, side):
    """Junk on the key being negotiated (the server's renegotiation; the forgery reaches the
    server, or our client): that renegotiation is abandoned, the key in use carries the tunnel,
    and a later one succeeds -- ours RECOVERY_EVERY later, or the peer's at its hand-window,
    whose handshake stalled (it takes no new soft reset meanwhile, as 2.6 takes none)."""
    w, gw, wire = _world(pki, clients=1)
    rec = _victim(gw)
    conn = w.clients[0].conn
    s = rec.session if side == "server" else conn.session
    src, dst = (rec.addr, (SERVER_IP, 1194)) if side == "server" else ((SERVER_IP, 1194), rec.addr)
    old = s.send_key.key_id
    new = rec.session.next_key_id
    w.hold = (src, dst, new)            # the peer's TLS records of the new key never arrive ...
    rec.session.renegotiate(w.clock())
    assert w.run(lambda: (k := s.keys.get(new)) is not None and k.phase == KS.TLS, max_time=10)
    _forge(w, wire, src, dst, key_id=new)       # ... the forger's does, as the next message
    assert w.run(lambda: s.stats.get("renegotiation failed"), max_time=2), s.stats
    w.hold = None
    assert not s.closed and s.send_key.key_id == old and new not in s.keys
    ping_both_ways(w, 0, b"during", tries=3)
    # The peer's half-done handshake ends at its hand-window (60 s); then a new key -- over a
    # new TLS session if our client's renegotiation was the one that failed (_new_tls_session).
    cs, c_old, s_old = conn.session, conn.session.send_key, rec.session.send_key

    def renewed() -> bool:
        r = gw.d.by_addr.get(rec.addr)
        return (r is not None and r.session.established and not r.session.closed and not cs.closed
                and cs.send_key is not None and cs.send_key is not c_old
                and r.session.send_key is not None and r.session.send_key is not s_old)
    assert w.run(renewed, max_time=60 + session_mod.RECOVERY_EVERY + 30), (s.stats, cs.stats)
    ping_both_ways(w, 0, b"after", tries=3)
    assert w.clients[0].conn is conn and conn.session is cs
    assert not gw.d.take_internal_errors()


def test_repeated_forgeries_renegotiate_at_a_bounded_rate(pki):
    """A forger sending junk on the newest key of the client's current session every half second
    for two minutes (each with the packet id after the client's newest, so the client's next
    control packet is dropped as a replay too): the client keeps its connection and its tunnel
    carries packets; the server's renegotiations for it are at most one per RECOVERY_EVERY, its
    warnings few."""
    w, gw, wire = _world(pki, clients=1)
    addr, conn = _victim(gw).addr, w.clients[0].conn
    seconds, every = 120, 0.5
    for i in range(int(seconds / every)):
        _forge(w, wire, addr, (SERVER_IP, 1194))
        w.run_for(every)
        r = gw.d.by_addr.get(addr)
        assert w.clients[0].conn is conn and not conn.session.closed, f"client restarted at forgery {i}"
        assert r is not None and r.common_name == "client0", f"client0's record gone at forgery {i}"
        if i % 40 == 39:
            ping_both_ways(w, 0, bytes([i]), tries=3)
    counts = gw.d.drop_counters()
    assert counts.get(BROKEN, 0) >= 1
    assert counts.get(RECOVERY, 0) <= seconds / session_mod.RECOVERY_EVERY + 1, counts
    # Said at NoteLimit's pace (3 at once, then one per 30 s) per session, the rest counted.
    s = gw.d.by_addr[addr].session
    assert s._warnings <= 3 + seconds / 30 + 2, s.stats
    assert not gw.d.take_internal_errors()


def test_the_bystander_of_a_forgery_stays_connected(pki):
    """The forgery touches the victim's session only: client1 is untouched."""
    w, gw, wire = _world(pki)
    by = _victim(gw, "client1")
    _forge(w, wire, _victim(gw).addr, (SERVER_IP, 1194))
    w.run_for(1)
    assert gw.d.by_addr.get(by.addr) is by and by.session.established
    assert not by.session.stats.get(BROKEN)
    assert not gw.d.take_internal_errors()


def test_a_client_kill_right_after_a_forgery_still_reaches_the_client(pki):
    """review48e: the management's client-kill while the server's key of that client has no TLS
    (a forgery broke it, its replacement not negotiated yet): RESTART cannot go on the control
    channel, so the client is dropped at once with the exit notification, which the data channel
    still carries, and it reconnects at once. Before, the RESTART was "sent" into nothing, the
    exit notification left out as if the client had acknowledged it, and the client sat on a
    dead tunnel until its ping-restart."""
    w, gw, wire = _world(pki, clients=1)
    rec = _victim(gw)
    s, conn = rec.session, w.clients[0].conn
    _forge(w, wire, rec.addr, (SERVER_IP, 1194))
    assert w.run(lambda: s.stats.get(BROKEN), max_time=2) and not s.closed
    assert s._text_key() is None, "the renegotiation replacing the key was already done: nothing tested"
    t0 = w.clock.t
    assert gw.ops.client_kill(gw.ops.info[id(rec)].cid, "RESTART")
    assert w.run(lambda: not rec.alive and w.clients[0].conn is not conn, max_time=10), \
        f"the killed client did not learn of it ({conn.session.stats})"
    assert w.clock.t - t0 < 5, w.clock.t - t0
    assert not gw.d.take_internal_errors()


def test_our_clients_exit_notification_still_reaches_the_server_after_a_forgery(pki):
    """review48e: our client stops (explicit-exit-notify, the server negotiated cc-exit) while
    its key's TLS is broken: EXIT cannot go on the control channel, so it says OCC exit on the
    data channel and the server ends its session at once. Before, the EXIT went nowhere and the
    server kept the client until its ping timeout."""
    w, gw, wire = _world(pki, clients=1, client_extra="explicit-exit-notify 2\n")
    rec = _victim(gw)
    cs = w.clients[0].conn.session
    assert cs.cc_exit, "the server did not negotiate cc-exit: nothing tested"
    _forge(w, wire, (SERVER_IP, 1194), rec.addr)
    assert w.run(lambda: cs.stats.get(BROKEN), max_time=2) and not cs.closed
    assert cs._text_key() is None, "the renegotiation replacing the key was already done: nothing tested"
    # (the management's cr-response is refused meanwhile, not said to go: nothing would carry it)
    assert not cs.send_control_text("CR_RESPONSE,dGVzdA==", w.clock.t)
    w.clients[0].request_stop()
    assert w.run(lambda: not rec.alive, max_time=3), "the server did not learn of the client's exit"
    assert not gw.d.take_internal_errors()
