"""Our client's reconnects reuse the TLS context its first connection made (tls.context_for):
the profile is read once, so a SIGUSR1 restart has nothing new to parse (OpenVPN 2.6 keeps its
SSL_CTX across such a restart with `persist-key`; ours has always kept the key material itself),
and the reconnect is still a full handshake the server checks."""
from __future__ import annotations

import signal

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_sigusr1 import _signal


def test_sigusr1_reconnect_reuses_the_tls_context(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    first = c.conn.session
    for _ in range(2):
        before = c.connections
        _signal(c, signal.SIGUSR1)
        assert w.run(lambda: c.connections == before + 1, max_time=30)
        s = c.conn.session
        assert s is not first and s.established
        assert s.tls_context is first.tls_context
    assert len(w.server.d.clients) == 1           # the server took each reconnect as the same client
