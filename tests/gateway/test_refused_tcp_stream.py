"""A TCP client told AUTH_FAILED gets the time to read it (helper review47b; gateway/refused_streams.py).

The server closed a refused client's connection in the wake-up that wrote AUTH_FAILED: what the
socket had not taken yet was lost with the close, and Linux's RST for a close with unread data
threw away what was unsent. Debian's 2.6.14 client, refused at its renegotiation while its traffic
flowed and its side slow to read, logged "Connection reset" and logged in again (3 runs of 3, lab:
tests/interop/test_refused_login_loss_vs_openvpn.py). Here, in memory, the refused connection's
client stops taking bytes (its window 0) from the moment its password is submitted for the check,
and takes them again a moment later: the AUTH_FAILED must still reach it, on that connection.
"""
from __future__ import annotations

from appliance.gateway import refused_streams
from appliance.gateway.server import ServerGateway
from appliance.gateway.refused_streams import EVICTED
from appliance.openvpn.passdb import hash_password
from appliance.openvpn.refusals import REFUSAL_HOLD
from lab.fakes import stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf

PASSDB = f"alice:{hash_password('right')}\n"
SERVER_EXTRA = "auth-user-pass-verify /mem/passdb passdb\n"
CLIENT_EXTRA = "auth-user-pass\n"


def _stall_at_the_check(w: World, times: int) -> list:
    """The first `times` connections whose password goes to the check stop taking bytes from the
    server then (the server's socket's window 0): what is written next waits in our queue. The
    server-side sockets so stalled are returned (filled in as it happens)."""
    gw, stalled = w.server, []
    submit = gw.auth.submit

    def stalling(tag, *a, **k):
        if len(stalled) < times:
            sock = gw.conns[tag[0].addr].t.sock
            sock.window = 0
            stalled.append(sock)
        return submit(tag, *a, **k)
    gw.auth.submit = stalling
    return stalled


def test_a_refusal_the_client_cannot_take_yet_still_reaches_it_on_that_connection(pki):
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    c = w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA), username="alice",
                     password="wrong")
    stalled = _stall_at_the_check(w, 1)
    assert w.run(lambda: stalled and gw.auth.checked >= 1 and not gw.conns, max_time=30), \
        "the wrong password was not refused (the case tests nothing)"
    w.run_for(0.5)
    assert c.result is None
    stalled[0].window = 1 << 30                 # the client reads again
    assert w.run(lambda: c.result is not None, max_time=30), "the client never ended"
    assert c.result == 1 and gw.auth.checked == 1, (
        f"the client logged in {gw.auth.checked} times: its AUTH_FAILED was lost with the connection")
    assert w.run(lambda: stalled[0].closed, max_time=REFUSAL_HOLD + 1), "the refused connection outlived its hold"


def test_refused_connections_are_bounded_and_closed_after_the_hold(pki, monkeypatch):
    """Clients that never read their AUTH_FAILED (window 0 for good) nor close: at most
    REFUSALS_MAX such connections at once (the oldest closed first, counted), each closed by
    REFUSAL_HOLD; the server's books hold none of them."""
    monkeypatch.setattr(refused_streams, "REFUSALS_MAX", 2)
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    for i in range(3):
        w.add_client(client_conf(pki, f"client{i}", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                     ip=f"198.18.0.{20 + i}", username="alice", password=f"guess{i}")
    stalled = _stall_at_the_check(w, 3)
    peak = [0]

    def refused_all() -> bool:
        live = {id(link.t.sock) for link in gw.conns.values()}       # not refused yet
        peak[0] = max(peak[0], sum(not s.closed and id(s) not in live for s in stalled))
        return gw.auth.checked >= 3 and not gw.conns
    assert w.run(refused_all, max_time=30), "three wrong passwords were not refused"
    assert len(stalled) == 3 and peak[0] == 2 and gw.faults.counts.get(EVICTED) == 1, (peak, gw.faults.counts)
    assert not gw.d.by_addr and not gw.d.by_peer_id
    assert w.run(lambda: all(s.closed for s in stalled), max_time=REFUSAL_HOLD + 1), \
        "a refused connection outlived its hold"


def test_a_refused_client_that_keeps_sending_is_read_a_bounded_amount(pki):
    """After its refusal the connection is read only to let our close meet no unread data; a
    client that keeps sending (not reading its AUTH_FAILED) is read REFUSED_STREAM_READ bytes at
    most, thrown away and counted, then left to stall until the hold ends: no busy loop, nothing
    of it reaches the server's books."""
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                 username="alice", password="wrong")
    stalled = _stall_at_the_check(w, 1)
    assert w.run(lambda: stalled and gw.auth.checked >= 1 and not gw.conns, max_time=30)
    client_end = stalled[0].peer
    junk = bytes(64 << 10)
    for _ in range(3 * refused_streams.REFUSED_STREAM_READ // len(junk)):
        client_end.send(junk)
    steps = [0]

    def held() -> bool:
        steps[0] += 1
        return stalled[0].closed
    assert w.run(held, max_time=REFUSAL_HOLD + 1), "the refused connection outlived its hold"
    read = gw.faults.counts.get(refused_streams.DISCARDED, 0)
    assert refused_streams.REFUSED_STREAM_READ <= read < refused_streams.REFUSED_STREAM_READ + len(junk) * 5, read
    assert steps[0] < 2000, f"{steps[0]} wake-ups for one refused connection over its hold"
    assert not gw.d.by_addr and gw.d.drop_counters().get("packet on a TCP connection whose session ended") is None


def test_a_full_server_makes_room_by_closing_a_refused_connection_never_a_live_one(pki, monkeypatch):
    """Helper review47e: refused connections held count against the connection cap, and when a
    new connection needs room the oldest refused one goes -- not the oldest live connection
    without a handshake (what _evict_one would pick), and the cap is never passed."""
    monkeypatch.setattr(ServerGateway, "max_conns", property(lambda self: 3))
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    for i in range(2):
        w.add_client(client_conf(pki, f"client{i}", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                     ip=f"198.18.0.{20 + i}", username="alice", password=f"guess{i}")
    stalled = _stall_at_the_check(w, 2)             # their AUTH_FAILED never taken: held 5 s
    assert w.run(lambda: gw.auth.checked >= 2 and not gw.conns, max_time=30), "two wrong passwords not refused"
    assert len(gw.refused_streams) == 2
    live = stream_connect(w.net, "198.18.0.40", (SERVER_IP, 1194))     # a live one, no handshake yet
    assert w.run(lambda: len(gw.conns) == 1, max_time=2)
    newcomer = stream_connect(w.net, "198.18.0.41", (SERVER_IP, 1194))
    assert w.run(lambda: any(link.t.sock is newcomer.peer for link in gw.conns.values())
                 or newcomer.closed or newcomer.reset, max_time=2), "the newcomer was never accepted"
    assert not live.peer.closed and not live.reset, "a live connection was closed to make room"
    assert len(gw.conns) == 2 and len(gw.refused_streams) == 1, (len(gw.conns), len(gw.refused_streams))
    assert stalled[0].closed and not stalled[1].closed, "not the oldest refused connection closed"
    assert gw.faults.counts.get(EVICTED) == 1, gw.faults.counts


def test_one_source_cannot_push_out_another_sources_refused_connection(pki, monkeypatch):
    """Helper review47e: refused connections held per source are bounded (PER_SOURCE_REFUSED), a
    source's newest closing its own oldest; before, one source refused fast filled REFUSALS_MAX
    and the global cap closed the other sources' ones, their AUTH_FAILED lost."""
    monkeypatch.setattr(refused_streams, "REFUSALS_MAX", 3)
    monkeypatch.setattr(refused_streams, "PER_SOURCE_REFUSED", 2)
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB, per_source_pending=4)
    w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                 ip="198.18.0.30", username="alice", password="typo")
    stalled = _stall_at_the_check(w, 4)
    assert w.run(lambda: gw.auth.checked >= 1 and not gw.conns, max_time=30), "the wrong password not refused"
    victim = stalled[0]
    for i in range(1, 4):
        w.add_client(client_conf(pki, f"client{i}", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                     ip="198.18.0.20", username="alice", password=f"guess{i}")
    assert w.run(lambda: gw.auth.checked >= 4 and not gw.conns, max_time=REFUSAL_HOLD - 1), \
        "three more wrong passwords not refused within the hold"
    assert not victim.closed, "another source's refused connections closed this one early"
    assert len(gw.refused_streams) == 3 and gw.faults.counts.get(EVICTED) == 1, gw.faults.counts
    assert [s.closed for s in stalled[1:]] == [True, False, False]


def test_a_stop_closes_the_refused_connections_held(pki):
    """Helper review47e: SIGTERM while a refused connection is held (its client not reading): the
    stop closes it with the rest, rather than leaving it to a timer of a loop that has ended."""
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA + "connect-retry 300\n"),
                 username="alice", password="wrong")
    stalled = _stall_at_the_check(w, 1)
    assert w.run(lambda: stalled and gw.auth.checked >= 1 and not gw.conns, max_time=30)
    assert len(gw.refused_streams) == 1 and not stalled[0].closed
    gw.request_stop()
    gw._cleanup()                       # what run() does once the loop ends
    assert gw.result == 0 and stalled[0].closed and len(gw.refused_streams) == 0


def test_a_client_that_half_closes_before_reading_still_gets_its_refusal(pki):
    """review47e: a client that shuts its sending side (shutdown(SHUT_WR)) while its AUTH_FAILED
    still waits in our queue (its window full), then reads: the FIN closed the held connection
    at once and the queue went with it. 2.6 reads no connection while its output waits (mtcp.c),
    so it meets the FIN only once all is written; now ours writes it first, then closes."""
    import socket
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    c = w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA), username="alice",
                     password="wrong")
    stalled = _stall_at_the_check(w, 1)
    assert w.run(lambda: stalled and gw.auth.checked >= 1 and not gw.conns, max_time=30), \
        "the wrong password was not refused (the case tests nothing)"
    (key,) = gw.refused_streams.by_key
    assert gw.refused_streams.by_key[key][0].wants_write, "nothing queued: the case tests nothing"
    stalled[0].peer.shutdown(socket.SHUT_WR)      # the client's FIN; it reads on
    w.run_for(0.5)
    assert c.result is None and not stalled[0].closed, "closed at the client's FIN, its AUTH_FAILED unsent"
    stalled[0].window = 1 << 30                  # the client reads again
    assert w.run(lambda: c.result is not None, max_time=30), "the client never ended"
    assert c.result == 1 and gw.auth.checked == 1, (
        f"the client logged in {gw.auth.checked} times: its AUTH_FAILED was lost at its FIN")
    assert w.run(lambda: stalled[0].closed, max_time=REFUSAL_HOLD + 1)


def _half_closed_refusal(pki):
    """A refused TCP client whose AUTH_FAILED waits in our queue (its window 0) and that sends
    a few bytes, then its FIN: (world, server, the client, the server's socket of it)."""
    import socket
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra=SERVER_EXTRA), PASSDB)
    c = w.add_client(client_conf(pki, "client0", proto="tcp", extra=CLIENT_EXTRA), username="alice",
                     password="wrong")
    stalled = _stall_at_the_check(w, 1)
    assert w.run(lambda: stalled and gw.auth.checked >= 1 and not gw.conns, max_time=30), \
        "the wrong password was not refused (the case tests nothing)"
    (key,) = gw.refused_streams.by_key
    assert gw.refused_streams.by_key[key][0].wants_write, "nothing queued: the case tests nothing"
    sock = stalled[0]
    sock.peer.send(b"\x00" * 300)                 # data the server has not read, then the FIN
    sock.peer.shutdown(socket.SHUT_WR)
    return w, gw, c, sock


def test_a_client_that_half_closes_and_never_reads_is_closed_at_the_hold(pki):
    """review48c: the half-close path (a FIN while the refusal is queued) keeps the connection
    for its refusal -- bounded all the same: a client that never reads is closed when the hold
    ends, and what it sent before its FIN is read and thrown away, not handed on."""
    w, gw, c, sock = _half_closed_refusal(pki)
    since = w.clock.t
    w.run_for(0.5)
    assert not sock.closed and len(gw.refused_streams) == 1, "closed at the FIN: the case tests nothing"
    assert w.run(lambda: sock.closed, max_time=REFUSAL_HOLD + 2), "a half-closed, never reading client held on"
    assert w.clock.t - since <= REFUSAL_HOLD + 1 and len(gw.refused_streams) == 0
    assert gw.faults.counts.get(refused_streams.DISCARDED, 0) >= 300, gw.faults.counts


def test_a_reset_after_the_half_close_closes_it_at_once(pki):
    """review48c: FIN, then RST (the client gives up) while our refusal is still queued: the
    connection is closed at the reset, not held to the end of the hold."""
    w, gw, _c, sock = _half_closed_refusal(pki)
    w.run_for(0.5)
    assert not sock.closed and len(gw.refused_streams) == 1, "closed at the FIN: the case tests nothing"
    sock.peer.abort()                             # the client's RST
    since = w.clock.t
    assert w.run(lambda: sock.closed, max_time=REFUSAL_HOLD + 2)
    assert w.clock.t - since < REFUSAL_HOLD / 2, "held to the hold's end after the client's reset"
    assert len(gw.refused_streams) == 0
