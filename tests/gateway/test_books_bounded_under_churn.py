"""soak44: the server keeps nothing per connection once a connection is gone -- over TCP, where
every reconnect comes from a new source port and is a new connection id, and over UDP.

Why: a server that runs for months sees millions of connections; a book (dict, set, list, deque)
keyed by a connection, an address or a port that is not emptied when they go grows without end.
The long soaks (lab/reliability/RESULTS.md, soak44) measure RSS, which moves for many reasons;
this walks every container reachable from the server gateway through our own objects
(lab/reliability/books_growth.measure) after the second round of restarts and after the last, with
the same clients connected at both: a book that keeps one entry per connection grows by the
connections made between (here 3 x 10), far above what the clients' own state at the moment varies
by (a renegotiation in progress: a key more)."""
from __future__ import annotations

import pytest

from lab.reliability.books_growth import churn

CLIENTS, ROUNDS = 3, 12
SLACK = 2 * CLIENTS     # a key or queued packet more per client at one moment than at the other


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_no_book_of_the_server_grows_with_connections_that_came_and_went(pki, proto):
    first, last, w = churn(proto, CLIENTS, ROUNDS, 25.0, pki=pki)
    assert len(w.server.d.clients) == CLIENTS
    grew = {k: (first.get(k, 0), n) for k, n in last.items() if n - first.get(k, 0) > SLACK}
    assert not grew, grew
    # the walk does reach the server's books (a test that cannot fail otherwise)
    assert last["gw.d.by_addr"] == CLIENTS and "gw.d.by_peer_id" in last and "gw.pump.timers._heap" in last


def test_the_check_fails_for_a_server_that_keeps_its_closed_connections_ids(pki, monkeypatch):
    # The check above can fail: with the dispatcher's forgetting of a closed connection undone
    # (a `closed_streams` entry per connection kept, as a book keyed by a connection or a source
    # port that is never emptied would be), the same churn shows that book by its path.
    from appliance.openvpn.server import ServerDispatcher
    real = ServerDispatcher.stream_closed

    def keeps(self, addr) -> None:
        real(self, addr)
        self.closed_streams.add(addr)

    monkeypatch.setattr(ServerDispatcher, "stream_closed", keeps)
    first, last, _w = churn("tcp", CLIENTS, ROUNDS, 25.0, pki=pki)
    assert last["gw.d.closed_streams"] - first["gw.d.closed_streams"] >= CLIENTS * (ROUNDS - 2)
