"""The reconciliation after our bug in a release gives back the peer-ids and pool addresses
first, whatever its later parts do. fault40 put two new parts in front of them -- the drop
counters of the sessions whose forgetting failed, and the data path's books (dev tap: the MAC
table, learn-address waits, broadcast budgets; on_reconcile) -- so a bug in either (the code
that just met one) stopped the reconciliation before the resources a client needs to connect
at all: the gone session's address stayed leased and its peer-id taken, and as `suspect` was
already cleared, until some later bug set it again. The pool and the peer-ids are what a full
server refuses new clients for; the data path's books only cost memory until then."""
from __future__ import annotations

from appliance.openvpn.l2switch import SwitchDataPath
from appliance.openvpn.server import ServerDispatcher
from tests.gateway.conftest import World, client_conf
from tests.gateway.test_tap_server import CLIENT_MAC, frame, tap_conf
from tests.gateway.test_tunnel import _up


def test_a_bug_in_the_data_paths_reconciliation_still_gives_back_address_and_peer_id(pki, monkeypatch, caplog):
    w = World()
    gw = w.add_server(tap_conf(pki, "client-to-client\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    first = frame(b"\xff" * 6, CLIENT_MAC, b"first")
    ctun.inject(first)
    assert w.run(lambda: first in stun.written, max_time=5)
    d = gw.d
    rec = gw.dp.macs.owner[CLIENT_MAC]
    assert len(d.st.pool.leased) == 1 and len(d.peer_ids) == 1

    real = ServerDispatcher._forget_steps

    def fails_once(self, r):  # noqa: ANN001
        monkeypatch.setattr(ServerDispatcher, "_forget_steps", real)
        raise RuntimeError("fault on the first line of _forget_steps")
    monkeypatch.setattr(ServerDispatcher, "_forget_steps", fails_once)

    def broken(self, live):  # noqa: ANN001
        raise RuntimeError("fault in the switch's reconciliation")
    monkeypatch.setattr(SwitchDataPath, "reconcile", broken)
    d.on_reconcile = gw.dp.reconcile                 # (bound at start: the broken one now)
    d.end(rec, "a test's end")
    assert not rec.alive and d.suspect
    w.run_for(6)                                     # the server's 5 s timer reconciles
    assert "internal error in reconciling" in caplog.text     # the switch's bug: logged, counted
    assert len(d.st.pool.leased) == 0, d.st.pool.leased      # ...and the address is free again
    assert len(d.peer_ids) == 0
