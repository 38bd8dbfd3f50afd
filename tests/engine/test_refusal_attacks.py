"""A refused login's remnant (refusals.py) attacked as a hostile peer would (helper atk47).

What the remnant must not become: a reflector (packets out for packets in, towards an address the
sender names), a way to drop another refusal's remnant at the same address, or something a flood
of refusals under the default limits can push out. Each case measures what the dispatcher sends.
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn.opcodes import OPCODE_SHIFT, Op
from appliance.openvpn.refusals import EVICTED, REFUSAL_HOLD, REFUSALS_MAX
from appliance.openvpn.server import AddressPool, ServerDispatcher, ServerSettings
from appliance.openvpn.session import Role, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_refused_login_under_loss import _refused_with_reply_lost, _run, _server, _told_auth_failed
from tests.engine.test_server_dispatcher import _icmp, _kpem, _pem, _pump, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture
from tests.engine.test_server_security import _mk_client


def _sent_to(d, addr, since: float, until: float, step: float = 0.05) -> list[bytes]:
    """Everything the dispatcher sends to `addr` from `since` to `until`, its timers run each `step`."""
    out, t = [], since
    while t <= until:
        d.handle_timer(t)
        out += [p for p, to in d.take_outgoing() if to == addr]
        t += step
    return out


def test_a_remnant_answers_no_packet_and_sends_twice_at_most(pki):  # noqa: F811
    """No reflection: whatever arrives on the refused session (its own packets replayed, acks for
    nothing, junk with its session id, a thousand of them), the remnant sends nothing in reply;
    over its whole life it sends the unacked refusal once more (two datagrams here, both far
    smaller than the TLS handshake the address had to complete to be refused at all) and is gone
    at REFUSAL_HOLD. A spoofed source gets no remnant: it cannot complete that handshake."""
    addr = ("198.18.0.100", 40000)
    d, a, rec = _refused_with_reply_lost(pki, True, addr)
    sid = rec.session.peer_sid
    r = d.refusals.get(addr)
    assert r is not None
    a._send_text("PUSH_REQUEST")
    a._flush(2.05)
    own = [bytes(p) for p in a.take_outgoing()]
    hostile = own * 10 + [bytes([Op.CONTROL_V1 << OPCODE_SHIFT]) + sid + bytes(40),
                          bytes([Op.ACK_V1 << OPCODE_SHIFT]) + sid + b"\x01" + bytes(4) + bytes(8)] * 495
    for p in hostile:
        d.receive(p, addr, 2.05)
    assert [p for p, to in d.take_outgoing() if to == addr] == []
    later = _sent_to(d, addr, 2.05, 2.0 + REFUSAL_HOLD + 0.5)
    assert 1 <= len(later) <= 2, len(later)
    assert sum(len(p) for p in later) < 1000, [len(p) for p in later]
    assert d.refusals.get(addr) is None and d.next_deadline() is None
    print(f"remnant: {len(hostile)} packets in, 0 answered; {len(later)} datagrams "
          f"({sum(len(p) for p in later)} bytes) resent over its {REFUSAL_HOLD:.0f} s")


def test_a_retired_remnants_timer_leaves_the_next_remnant_at_its_address(pki):  # noqa: F811
    """The same address and port refused twice within REFUSAL_HOLD (a client retrying from a bound
    port with a wrong password again): the first remnant goes when the second session starts, but
    its timer entry stays in the heap (lazy invalidation) and surfaces while the second remnant
    is held under the same address. That entry must not drop the second: its lost AUTH_FAILED
    is still sent again and heard."""
    addr = ("198.18.0.101", 40000)
    d, _a, _rec = _refused_with_reply_lost(pki, True, addr)      # refused at 2.0, resend due ~4.0
    first = d.refusals.get(addr)
    b = _mk_client(pki, pki["clients"][0], username="alice", password="wrong")
    _pump(d, [(b, addr)], now=2.5)
    assert d.refusals.get(addr) is None and not first.alive
    rec2 = d.by_addr[addr]
    assert any(isinstance(e, ev.AuthRequested) for r, e in d.events if r is rec2)
    d.auth_result(rec2, 0, False, 3.0, why="the deferred check said no")
    assert [p for p, to in d.take_outgoing() if to == addr]        # lost
    assert not _told_auth_failed(b)
    second = d.refusals.get(addr)
    assert second is not None and second is not first
    d.handle_timer(4.1)                   # the first remnant's old entry surfaces here
    assert d.refusals.get(addr) is second, "the first remnant's stale timer dropped the second"
    assert _run(d, b, addr, 4.1, 3.0 + REFUSAL_HOLD) is not None


def test_the_default_connect_freq_initial_lets_no_flood_evict_a_remnant(pki):  # noqa: F811
    """Eviction (REFUSALS_MAX at once) needs more refusals within REFUSAL_HOLD than the default
    connect-freq-initial (100 stateless answers per 10 s, fixed windows: 200 at most in any
    span shorter than 10 s) lets handshakes start: a flood of resets from distinct addresses
    gets at most that many cookies in REFUSAL_HOLD, below REFUSALS_MAX. (Handshakes started
    before -- max-half-open, 256 -- and refused together are the bound's other part: 256 at
    once fits, one more evicts the oldest.)"""
    count, period = ServerSettings.connect_freq_initial
    assert REFUSAL_HOLD < period
    d = _server(pki, True)
    assert (d.st.connect_freq_initial) == (count, period)
    answered = 0
    t = 0.0
    for i in range(3 * count):
        c = _mk_client(pki, pki["clients"][0], username="alice", password="wrong")
        addr = ("198.18.1.%d" % (i % 250 + 1), 42000 + i)
        for p in c.take_outgoing():
            d.receive(p, addr, t)
        answered += sum(1 for _p, to in d.take_outgoing() if to == addr)
        t += REFUSAL_HOLD / (3 * count)
    assert answered <= 2 * count < REFUSALS_MAX, answered
    print(f"{3 * count} resets from distinct addresses within {REFUSAL_HOLD:.0f} s: {answered} answered")
    assert d.drop_counters().get(EVICTED) is None


def _refused_at_renegotiation(pki, deliver_refusal: bool):
    """A client up at `addr`, its password changed, then refused at its renegotiation (10 s in):
    (dispatcher, client, addr, its record, time of the refusal, datagrams of the refusal lost).
    Without `deliver_refusal`, what the server sends from the refusal on is lost until the
    caller's loop takes over (the pump stops the moment the server forgot the session)."""
    good = {"password": "right"}
    stls = TlsSettings(_pem(pki["ca"][0]), _pem(pki["server"][0]), _kpem(pki["server"][1]), True,
                       remote_cert_tls="client")
    st = ServerSettings(
        session_config=lambda pid: SessionConfig(Role.SERVER, stls, None, peer_id=pid, ping=10, ping_restart=60,
                                                 verify_user=lambda u, p, cn: p == good["password"]),
        protection="none", pool=AddressPool("198.19.0.0", "255.255.255.0", "subnet"))
    d = ServerDispatcher(st, 0.0)
    addr = ("198.18.0.102", 40000)
    a = _mk_client(pki, pki["clients"][0], username="alice", password="right")
    _pump(d, [(a, addr)])
    assert _up(a)
    rec = d.by_addr[addr]
    good["password"] = "changed"            # (an operator changed it; or a hostile client's guess)
    t, lost = 10.0, 0
    a.renegotiate(t)
    while t < 20.0 and not a.closed:
        d.handle_timer(t)
        a.handle_timer(t)
        for p in a.take_outgoing():
            d.receive(p, addr, t)
        gone = d.by_addr.get(addr) is None
        for p, to in d.take_outgoing():
            if to != addr:
                continue
            if gone and not deliver_refusal:
                lost += 1                   # what the refusal sent, lost
            else:
                a.receive(p, t)
        if gone:
            return d, a, addr, rec, t, lost
        t += 0.25
    raise AssertionError("the renegotiation was not refused (the case tests nothing)")


def test_a_refusal_at_renegotiation_whose_packet_was_lost_is_sent_again(pki):  # noqa: F811
    """An established client refused at its renegotiation (its password no longer good: the
    server checks it again, as 2.6 does without an auth-token) is told AUTH_FAILED on the new key
    and forgotten. That datagram lost, nothing was sent again -- the remnant was kept only for
    sessions not yet up -- and the client, its data going to a server that had forgotten it,
    learnt of it only when its renegotiation timed out (hand-window, 60 s) and its next login
    was refused. OpenVPN 2.6's server tells a client whose renegotiation failed authentication
    the same way as at its first login (forward.c check_tls: TLSMP_KILL -> send_auth_failed ->
    schedule_exit), so the remnant covers it too: heard within the hold."""
    d, a, addr, _rec, refused_at, lost = _refused_at_renegotiation(pki, deliver_refusal=False)
    assert lost, "nothing of the refusal was lost (the case tests nothing)"
    t = refused_at + 0.25
    while t < refused_at + REFUSAL_HOLD + 5 and not a.closed:
        d.handle_timer(t)
        a.handle_timer(t)
        for p in a.take_outgoing():
            d.receive(p, addr, t)
        for p, to in d.take_outgoing():
            if to == addr:
                a.receive(p, t)
        t += 0.25
    assert any("on renegotiation" in e.reason for r, e in d.events if isinstance(e, ev.SessionClosed))
    assert _told_auth_failed(a), (f"the client never heard AUTH_FAILED within {t - refused_at:.1f} s of its "
                                  "refusal at renegotiation: the lost datagram was not sent again")
    assert t - refused_at <= REFUSAL_HOLD


def test_a_remnant_of_a_renegotiation_holds_nothing_of_the_client_and_passes_no_data(pki):  # noqa: F811
    """helper review47b, attacking atk47's remnant for a client refused at its renegotiation: its
    session had a data channel, a peer-id and a pool address. Those go at the refusal, not at the
    end of the hold: the peer-id and the address are free at once; the client's data packets
    after it (it goes on sending on key 0 until it hears AUTH_FAILED) are dropped and counted,
    never handed to the TUN, and do not feed the remnant (nor spend its REFUSAL_READS); and the
    same address and port logging in again within the hold gets a fresh session, not the remnant."""
    d, a, addr, rec, t, lost = _refused_at_renegotiation(pki, deliver_refusal=False)
    assert lost and d.refusals.get(addr) is not None, "no remnant: the case tests nothing"
    vaddr = a.pushed.ifconfig[0]
    assert rec.peer_id not in d.by_peer_id, "the refused client's peer-id is still held"
    assert d.st.pool.is_free(vaddr), f"the refused client's pool address {vaddr} is still held"
    assert not d.by_vaddr and not d.by_vaddr4
    before = d.drop_counters().get("data for unknown peer-id", 0)
    for i in range(40):
        got, pts = d.receive(a.encrypt(_icmp(vaddr, "198.19.0.1")), addr, t + 0.01 * i)
        assert got is None and not pts, "data of a refused client reached the TUN"
    assert d.drop_counters().get("data for unknown peer-id", 0) - before == 40
    r = d.refusals.get(addr)
    assert r is not None and r.reads == 0, "the client's data was read by the remnant"
    b = _mk_client(pki, pki["clients"][0], username="alice", password="changed")
    _pump(d, [(b, addr)], now=t + 1.0)
    assert d.refusals.get(addr) is None, "the remnant outlived a new session from its address"
    new = d.by_addr[addr]
    assert new is not rec and new.session.established and _up(b)
