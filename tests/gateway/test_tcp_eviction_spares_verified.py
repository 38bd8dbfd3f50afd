"""fuzz37: which TCP connection goes when the server is full. `_evict_one` made room with the
oldest connection that had no tunnel yet -- a client whose certificate had verified and whose
login waited for its verdict (management-client-auth, an auth script, a second factor: seconds
to minutes) was that oldest one, so anyone opening connections from a few dozen addresses cut
it off. A connection whose peer has shown a verified certificate is no stranger: the oldest
connection of a peer that has not is evicted instead, and when only verified peers are left the
newcomer is refused."""
from __future__ import annotations

from lab.fakes import stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, server_conf
from tests.gateway.test_mgmt_client_auth import Mgmt, _asked, _up


def test_a_flood_of_connections_does_not_evict_a_client_whose_login_waits(pki, tmp_path):
    w = World()
    gw = w.add_server(server_conf(pki, "tcp-server", extra=f"management {tmp_path}/m.sock unix\n"
                                  "management-client-auth\nmax-clients 2\n"))
    if gw.ops.mgmt is not None:
        gw.ops.mgmt.close()
    m = Mgmt()
    gw.ops.mgmt = m
    c = w.add_client(client_conf(pki, "client0", proto="tcp-client", extra="auth-user-pass\n"),
                     username="alice", password="first")
    assert _asked(w, m), "the login was not announced"
    idle = []
    for i in range(gw.max_conns + 5):
        idle.append(stream_connect(w.net, f"198.18.{10 + i // 200}.{1 + i % 200}", (SERVER_IP, 1194)))
        gw.pump.step(block=False)
    assert gw.faults.counts.get("TCP connection without handshake evicted (server full)", 0) >= 1
    _mode, cid, kid, _env = m.asks()[0]
    assert gw.ops.management_verdict(cid, kid, True), "the waiting login was cut off by the flood"
    assert w.run(lambda: _up(c), max_time=10), "the client admitted did not come up"
