"""A server's client between its accepted key and its push: its inactivity timer runs.

Since compat48 the server makes a client's data keys at its push (the cipher is chosen after the
client's per-client lines, as OpenVPN 2.6.14), so before the push its session has no send key --
and the keepalive timers ran only with one. A client that authenticated and then never asked for
its push (no PUSH_REQUEST, no IV_PROTO_REQUEST_PUSH: a `tls-client` without `pull`, a hostile
client) or went silent was never ended: no ping-restart, no deadline at all (review48f). Before
compat48, and in 2.6 (the instance's ping-restart runs from its start, forward.c
check_ping_restart), ping-restart ends it. A client that keeps asking while client-connect
decides is heard (its control packets reset the timer) and is not ended.
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import roles, wrapping
from appliance.openvpn.opcodes import IV_PROTO_REQUEST_PUSH
from appliance.openvpn.session import KS
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401

HOME = ("198.18.0.48", 1194)


def _closed_reason(d) -> str | None:
    return next((e.reason for _r, e in d.events if isinstance(e, ev.SessionClosed)), None)


def test_a_client_that_never_asks_for_its_push_ends_at_ping_restart(pki, monkeypatch):  # noqa: F811
    monkeypatch.setattr(roles, "IV_PROTO_CLIENT", roles.IV_PROTO_CLIENT & ~IV_PROTO_REQUEST_PUSH)
    d = _server(pki, "none")                          # ping 10, ping-restart 60
    c = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(c, HOME)], now=0.5)                    # the handshake; its PUSH_REQUESTs never sent on
    rec = d.by_addr.get(HOME) or d.pending[HOME]
    s = rec.session
    assert [k.phase for k in s.keys.values()] == [KS.ACTIVE] and not s.push_sent and s.send_key is None
    deadline = d.next_deadline()
    assert deadline is not None and deadline <= 0.5 + 60 + 1, deadline
    t = 1.0
    for _ in range(200):                              # up to 200 s of the server's timers, nothing heard
        d.handle_timer(t)
        d.take_outgoing()
        if s.closed:
            break
        t += 1.0
    assert s.closed, "still open 200 s after its last packet"
    assert 60 <= t <= 62, t
    assert "inactivity timeout (ping-restart 60s)" in (_closed_reason(d) or "")


def test_a_client_asking_while_client_connect_decides_is_not_ended(pki):  # noqa: F811
    d = _server(pki, "none", defer_connect=True)
    c = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(c, HOME)], now=0.5)
    (rec,) = [r for r, e in d.events if isinstance(e, ev.ConnectRequested)]
    rec.session.ping_restart = 20                     # (the client's own hand-window ends its wait at 60 s)
    t = 1.0
    for _ in range(45):                               # 45 s past ping-restart's 20: it keeps asking
        c.handle_timer(t)
        d.handle_timer(t)
        _pump(d, [(c, HOME)], now=t)
        t += 1.0
    assert not rec.session.closed, _closed_reason(d)
    d.connect_result(rec, True, t)
    _pump(d, [(c, HOME)], now=t + 0.1)
    assert _up(c) and rec.session.established and rec.session.send_key is not None, ([type(e).__name__ + str(getattr(e, "reason", getattr(e, "message", ""))) for e in c.events], c.closed)
