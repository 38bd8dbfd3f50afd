"""A client restarting from the same address while its old session ends.

A restart from an established client's address waits in `pending` beside the old session until
it is established itself (so replayed packets cannot end a session). When the old session ended
meanwhile (its own OCC exit, a ping-restart timeout, client-kill), the address had no record in
`by_addr`, and the restart's next packets, looked up there, went to the stateless path for
unknown clients and were dropped: its handshake could only time out.
"""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, _up, pki  # noqa: F401
from tests.engine.test_server_security import OCC_EXIT, OCC_MAGIC


def _steps(d, s, addr, now, n):
    """`n` rounds of the client's packets to the server and back."""
    for _ in range(n):
        for p in s.take_outgoing():
            d.receive(p, addr, now)
        for p, a in d.take_outgoing():
            if a == addr:
                s.receive(p, now)


def test_a_restart_goes_on_when_the_session_it_waits_beside_ends(pki):  # noqa: F811
    d = _server(pki, "none")
    home = ("198.18.0.44", 1194)
    old = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(old, home)])
    assert _up(old)
    old_rec = d.by_addr[home]
    new = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _steps(d, new, home, 1.0, 2)                     # cookie exchange, TLS under way
    new_rec = d.pending.get(home)
    assert new_rec is not None and not new_rec.session.established
    # The old session ends (here its own OCC exit, as a client restarting with
    # explicit-exit-notify sends it) while the new one is still in its handshake.
    d.receive(bytes(old.send_key.seal(OCC_MAGIC + bytes((OCC_EXIT,)))), home, 1.1)
    assert not old_rec.alive
    _pump(d, [(new, home)], now=1.2)
    assert _up(new) and new_rec.session.established, new_rec.session.stats
    assert d.by_addr.get(home) is new_rec and home not in d.pending
    ping = _icmp(new.pushed.ifconfig[0], "198.19.0.1")
    assert len(d.receive(new.encrypt(ping), home, 1.3)[1]) == 1


def test_the_session_a_restart_replaces_ends_as_replaced_not_as_another_client(pki):  # noqa: F811
    """A client restarting from its own address and port (2.6: the same instance) is the same
    client: the old session's end names the restart, not "another client connected with common
    name" (the duplicate-cn rule, for a second client elsewhere), as soak34's in-place restarts
    logged it at every restart."""
    d = _server(pki, "none")
    home = ("198.18.0.45", 1194)
    old = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(old, home)])
    assert _up(old)
    old_rec = d.by_addr[home]
    d.events.clear()
    new = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(new, home)], now=2.0)
    assert _up(new) and not old_rec.alive and d.by_addr.get(home) is not old_rec
    ends = [e for _r, e in d.events if isinstance(e, ev.SessionClosed)]
    assert [e.reason for e in ends] == ["replaced by a new session from the same address"], ends
    # A client of that name from elsewhere is still another client.
    d.events.clear()
    other = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    _pump(d, [(other, ("198.18.0.46", 1194))], now=3.0)
    ends = [e for _r, e in d.events if isinstance(e, ev.SessionClosed)]
    assert _up(other) and [e.reason for e in ends] == ["another client connected with common name "
                                                       f"{old_rec.common_name}"], ends
