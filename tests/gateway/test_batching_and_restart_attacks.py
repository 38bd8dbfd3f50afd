"""Review of the server's reply batching, same-address restarts and friends (review9): each test
is one way a peer could make the server end or confuse a session not its own (each failed before
its fix)."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from appliance.openvpn.framing import StreamFramer
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from lab.fakes import stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_faults import served
from tests.gateway.test_passwords import CLIENT_EXTRA as PW_CLIENT, PASSDB, SERVER_EXTRA as PW_SERVER
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



def test_a_tcp_client_refused_within_a_read_is_told_auth_failed_before_the_close(pki, tmp_path):
    """A TCP client the server refuses while reading its packets (here ccd-exclusive without a
    ccd file for it: refused when its options are pushed, inside the read) must find AUTH_FAILED
    on the connection before it is closed, as a UDP client does. Read here with an engine client
    on a raw connection: everything the server wrote before closing is read, then the EOF."""
    w = World()
    w.add_server(server_conf(pki, proto="tcp", protection="none",
                             extra=f"client-config-dir {tmp_path}\nccd-exclusive\n"))
    cert, key = pki["clients"]["client0"]
    tls = TlsSettings(pki["ca"].encode(), cert.encode(), key.encode(), False, remote_cert_tls="server")
    c = Session(SessionConfig(Role.CLIENT, tls, wrapping.PlainWrapper, proto="tcp"), 0.0)
    c.start(0.0)
    sock = stream_connect(w.net, "198.18.0.77", (SERVER_IP, 1194))
    framer = StreamFramer()
    for _ in range(200):
        out = c.take_outgoing()
        if out and not sock.peer.closed:
            sock.send(b"".join(len(p).to_bytes(2, "big") + bytes(p) for p in out))
        w.server.pump.step(block=False)
        for p in framer.feed(bytes(sock.inbox)):
            c.receive(p, w.clock.t)
        sock.inbox.clear()
        if c.closed or (sock.eof and not out):
            break
    assert sock.eof, "the server closed the refused client's connection"
    assert any(isinstance(e, ev.AuthFailed) for e in c.events), \
        f"the connection closed without AUTH_FAILED: {[type(e).__name__ for e in c.events]}"



@pytest.mark.parametrize("refusal", ["ccd-exclusive", "password"])
def test_a_tcp_client_the_server_refuses_and_disconnects_stops(pki, tmp_path, refusal):
    """Our client over TCP, refused by our server (ccd-exclusive without a ccd file; a wrong
    password): the server writes AUTH_FAILED and closes; our ACK of it then fails to send. The
    AUTH_FAILED must still end the run (exit 1), not a lost link that reconnects for ever."""
    w = World()
    if refusal == "password":
        w.add_server(server_conf(pki, proto="tcp", extra=PW_SERVER), PASSDB)
        c = w.add_client(client_conf(pki, proto="tcp", extra=PW_CLIENT), username="bob", password="wrong")
    else:
        w.add_server(server_conf(pki, proto="tcp", extra=f"client-config-dir {tmp_path}\nccd-exclusive\n"))
        c = w.add_client(client_conf(pki, proto="tcp"))
    assert w.run(lambda: c.result is not None, max_time=60), "the refused client kept reconnecting"
    assert c.result == 1 and not _up(w)
