"""Review of the server's reply batching, same-address restarts and friends (review9): each test
is one way a peer could make the server end or confuse a session not its own (each failed before
its fix)."""
from __future__ import annotations

from appliance.openvpn import wrapping
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_faults import served
from tests.gateway.test_tunnel import _up


def _engine_client(pki, name: str) -> Session:
    cert, key = pki["clients"][name]
    tls = TlsSettings(pki["ca"].encode(), cert.encode(), key.encode(), False, remote_cert_tls="server")
    s = Session(SessionConfig(Role.CLIENT, tls, wrapping.PlainWrapper), 0.0)
    s.start(0.0)
    return s


def test_a_restart_that_trips_a_bug_in_a_batch_ends_itself_not_the_client_at_its_address(pki, monkeypatch):
    """A new session from an established client's address (a restart behind a fixed port or NAT
    mapping, or anyone who can receive at that address) waits beside the running one. If our code
    raises while flushing that new session's batch, the fault must end that session -- not the
    established client the dispatcher holds under the same address."""
    w = World()
    w.add_server(server_conf(pki, protection="none"))
    w.add_client(client_conf(pki, protection="none"))
    served(w)
    addr = w.clients[0].conn.link.t.sock.local
    d = w.server.d
    # A second TLS session from that address through the cookie exchange (answered here by hand:
    # the stateless reply would go to the established client's socket).
    c2 = _engine_client(pki, "client1")
    now = w.clock.t
    for p in c2.take_outgoing():
        d.receive(p, addr, now)
    for p, a in d.take_outgoing():
        assert a == addr
        c2.receive(p, now)
    third = c2.take_outgoing()
    assert third

    real_end_batch = Session.end_batch

    def buggy_end_batch(self, now):
        if self.owner is not None and not self.established:      # the new, server-side session
            raise RuntimeError("our bug while flushing a batch")
        return real_end_batch(self, now)
    monkeypatch.setattr(Session, "end_batch", buggy_end_batch)
    for p in third:
        w.net.inject((SERVER_IP, 1194), p, addr)
    w.run_for(0.5)
    assert w.server.faults.counts.get("internal error"), "the bug was hit and counted"
    pending = d.pending.get(addr)
    assert pending is None or not pending.alive, "the session that raised was ended"
    assert d.by_addr.get(addr) is not None and d.by_addr[addr].alive, "the established client was ended"
    served(w)
    assert _up(w)
