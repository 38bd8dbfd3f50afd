"""A bug on the very first line of the server's forgetting of a session (_forget_steps, which
builds its release steps) skipped every step: the client's iroute stayed routed to the gone
session and its admission count (a max-clients slot) stayed held, for the server's life. The
server's 5 s reconciliation now rebuilds both from its live sessions, counted and logged."""
from __future__ import annotations

import ipaddress

from appliance.gateway.server_files import ccd_loader
from appliance.openvpn.server import ServerDispatcher
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_faults import served


def test_a_forget_that_fails_at_once_leaves_no_route_and_no_slot(pki, tmp_path, monkeypatch, caplog):
    (tmp_path / "client0").write_text("iroute 198.19.77.0 255.255.255.0\n")
    w = World()
    # max-clients 2: the slot the gone session kept would refuse the client's next connection.
    gw = w.add_server(server_conf(pki, extra=f"client-config-dir {tmp_path}\nmax-clients 2\n"
                                       "route 198.19.77.0 255.255.255.0\n"))
    gw.st.ccd = ccd_loader(str(tmp_path))       # World reads no files; as server_files does at start
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    served(w, 0)
    served(w, 1)
    d = w.server.d
    net = ipaddress.ip_network("198.19.77.0/24")
    old = next(r for r in d.clients if r.common_name == "client0")
    assert d.iroutes.lookup(net.network_address.packed) is old

    real, failed = ServerDispatcher._forget_steps, []

    def once(self, rec):  # noqa: ANN001
        if not failed:
            failed.append(rec)
            raise RuntimeError("fault on the first line of _forget_steps")
        return real(self, rec)
    monkeypatch.setattr(ServerDispatcher, "_forget_steps", once)
    d.end(old, "a test's end")
    assert failed == [old] and not old.alive
    w.run_for(6)                                # the server's 5 s timer reconciles
    assert w.server.faults.counts.get("internal error: held by no session, given back", 0) >= 2
    assert "given back" in caplog.text
    owner = d.iroutes.lookup(net.network_address.packed)
    assert owner is None or owner.alive         # the gone session routes nothing
    assert d.admission.n_established + d.admission.n_half_open == len([r for r in d.clients if r.admitted])
    # The client comes back (its ping-restart) within max-clients -- its old slot given back --
    # and its network is routed to it.
    assert w.run(lambda: w.clients[0].connections >= 2 and w.clients[0].conn is not None
                 and w.clients[0].conn.was_up, max_time=150)
    served(w, 0, tag=b"back")
    served(w, 1, tag=b"other")
    new = next(r for r in d.clients if r.common_name == "client0")
    assert new is not old and d.iroutes.lookup(net.network_address.packed) is new
