"""dev tap: a bug on the very first line of the server's forgetting of a session (_forget_steps,
which builds its release steps) skipped the switch's forget: the client's MAC stayed in the MAC
table, led to the gone session, and the TAP's frames to that MAC went on being sealed with the
ended session's keys and reaching that client -- after the server had ended it (a kick, a
revoked certificate) -- until another client sent from the MAC (a new client was not blocked: a
gone holder's MAC is free to take). The gone session's drop counters were lost too (the server's
counters line read only the live sessions'). Now the data path never delivers to a gone session,
and the 5 s reconciliation frees its MACs and retires its counters, counted and logged."""
from __future__ import annotations

from appliance.openvpn.server import ServerDispatcher
from tests.gateway.conftest import SERVER_IP, World, client_conf
from tests.gateway.test_tap_server import CLIENT_MAC, HOST_MAC, frame, tap_conf
from tests.gateway.test_tunnel import _up

REPLAYED = "replayed data packet"


def _fail_once(monkeypatch) -> list:
    real, failed = ServerDispatcher._forget_steps, []

    def once(self, rec):  # noqa: ANN001
        if not failed:
            failed.append(rec)
            raise RuntimeError("fault on the first line of _forget_steps")
        return real(self, rec)
    monkeypatch.setattr(ServerDispatcher, "_forget_steps", once)
    return failed


def test_a_forget_that_fails_at_once_frees_the_mac_and_keeps_the_counters(pki, monkeypatch, caplog):
    w = World()
    gw = w.add_server(tap_conf(pki, "client-to-client\n"))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    stun, c0tun, c1tun = w.server_net.tun, w.client_nets[0].tun, w.client_nets[1].tun
    d = gw.d

    # client0 holds CLIENT_MAC; one of its data packets, replayed, is counted by its session.
    data_pkts: list = []
    deliver = w.net.deliver

    def spy(data, src, dst):  # noqa: ANN001
        if dst[0] == SERVER_IP and src[0] == w.client_ports[0].ip and data[0] >> 3 == 9:    # P_DATA_V2
            data_pkts.append((bytes(data), src, dst))
        return deliver(data, src, dst)
    monkeypatch.setattr(w.net, "deliver", spy)
    first = frame(b"\xff" * 6, CLIENT_MAC, b"first")
    c0tun.inject(first)
    assert w.run(lambda: first in stun.written, max_time=5)
    old = gw.dp.macs.owner[CLIENT_MAC]
    assert old.common_name == "client0"
    data, src, dst = data_pkts[0]
    w.net.inject(dst, data, src)
    assert w.run(lambda: d.drop_counters().get(REPLAYED, 0) == 1, max_time=2)

    failed = _fail_once(monkeypatch)
    d.end(old, "a test's end")                 # as a kick: the client is not told
    assert failed == [old] and not old.alive
    w.run_for(0.1)
    # The log names the step that raised (it read "a client's client-connect verdict" before).
    assert "internal error in releasing a client (before any step)" in caplog.text

    # At once (before any reconciliation): the TAP's frame to the gone session's MAC is not
    # sealed for it -- client0, which does not know it was ended, never gets it.
    down = frame(CLIENT_MAC, HOST_MAC, b"down")
    stun.inject(down)
    w.run_for(1)
    assert down not in c0tun.written

    rows = gw.ops.status_lines(2)               # (the status books follow the session's end event)
    assert not any(r.startswith(("CLIENT_LIST,client0,", "ROUTING_TABLE,02:00:00:00:0a:01@0,")) for r in rows), rows
    w.run_for(5)                                # the server's 5 s timer reconciles
    assert CLIENT_MAC not in gw.dp.macs.owner and id(old) not in gw.dp.macs.held
    assert gw.faults.counts.get("internal error: held by no session, given back", 0) >= 3
    assert "MAC entry(ies) that no session held given back" in caplog.text
    assert d.drop_counters().get(REPLAYED) == 1     # the gone session's count kept
    held = gw.held_counts()
    assert held["MACs"] == 0 and held["MAC holders"] == 0, held

    # The MAC is free: client1 sends from it and gets the TAP's frames to it.
    mine = frame(b"\xff" * 6, CLIENT_MAC, b"client1's now")
    c1tun.inject(mine)
    assert w.run(lambda: mine in stun.written, max_time=5)
    assert gw.dp.macs.owner[CLIENT_MAC].common_name == "client1"
    back = frame(CLIENT_MAC, HOST_MAC, b"back")
    stun.inject(back)
    assert w.run(lambda: back in c1tun.written, max_time=2)
    assert back not in c0tun.written


def test_without_a_fault_the_reconciliation_takes_nothing(pki):
    """The reconciliation of a clean server's books changes nothing: a live client keeps its MAC
    and the TAP's frames to it."""
    w = World()
    gw = w.add_server(tap_conf(pki, "client-to-client\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    first = frame(b"\xff" * 6, CLIENT_MAC, b"first")
    ctun.inject(first)
    assert w.run(lambda: first in stun.written, max_time=5)
    assert gw.d.reconcile() == (0, 0, 0)
    assert gw.dp.macs.owner[CLIENT_MAC].common_name == "client0"
    down = frame(CLIENT_MAC, HOST_MAC, b"down")
    stun.inject(down)
    assert w.run(lambda: down in ctun.written, max_time=2)
