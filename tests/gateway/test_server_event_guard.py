"""The server logs and acts on its sessions' events one by one (ServerGateway._drain_events): a
bug on one event -- its log line, the work it starts -- costs that event only, counted. It
raised out of the loop and took the rest of the batch with it: a log line that could not be
written kept the event from acting at all, and the other clients' events waiting behind it."""
from __future__ import annotations

import appliance.gateway.server as server_mod
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_faults import served


def test_events_whose_log_line_fails_still_act_and_clients_are_served(pki, monkeypatch):
    def broken(rec, e):  # noqa: ANN001
        raise ValueError("a log line of ours that cannot be made")
    monkeypatch.setattr(server_mod, "log_server_event", broken)
    w = World()
    w.add_server(server_conf(pki, proto="tcp"))
    w.add_client(client_conf(pki, "client0", proto="tcp"))
    w.add_client(client_conf(pki, "client1", proto="tcp"))
    served(w, 0)
    served(w, 1)
    assert w.server.faults.counts.get("internal error", 0) >= 2
    # Their tunnels came up as far as the server is concerned too: past the hand-window (60 s),
    # which closes a TCP connection whose session never did, each is still on its first one.
    w.run_for(70)
    assert [c.connections for c in w.clients] == [1, 1]
    served(w, 1, tag=b"later")
    # A session's end acts too: its TCP connection closed, its books cleared.
    w.clients[0].user_restart()
    served(w, 0, tag=b"again")
    w.run_for(6)
    assert len(w.server.d.clients) == 2 and len(w.server.conns) == 2, (w.server.d.clients, w.server.conns)
    served(w, 1, tag=b"other")
