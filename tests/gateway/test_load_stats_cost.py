"""`load-stats` counts the clients without building a status row for each (gateway/ops.py
load_stats). It built every established client's status row (its address text, cipher, times)
to count them: ~2-4 µs a client, so a management client pipelining load-stats -- 32 lines are
served per wake-up (management.py WAKE_LINES), and the reply is too short for the 64 KiB reply
budget to stop it -- held the loop ~100 ms per wake-up at 1,000 clients, every client's packets
waiting. 2.6 keeps a counter. The count is the same clients as before (established, alive)."""
from __future__ import annotations

from appliance.gateway import status as st_mod
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_load_stats_counts_established_clients_without_building_status_rows(pki, monkeypatch):
    w = World()
    gw = w.add_server(server_conf(pki))
    for i in range(3):
        w.add_client(client_conf(pki, f"client{i}"))
    assert w.run(lambda: all(_up(w, i) for i in range(3)), max_time=30)
    built = []
    real_row = st_mod.ClientRow
    monkeypatch.setattr(st_mod, "ClientRow", lambda *a, **k: built.append(a) or real_row(*a, **k))
    n, bytes_in, bytes_out = gw.ops.load_stats()
    assert (n, built) == (3, [])
    assert bytes_in > 0 and bytes_out > 0
    assert len(gw.ops.rows()) == 3 and len(built) == 3      # (the patch does count what status builds)
