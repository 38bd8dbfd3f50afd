"""dev tap with client-to-client: a client's frame to a MAC whose holder is gone goes to the TAP
device, as to any MAC no client holds (OpenVPN 2.6: multi_process_incoming_link writes a
unicast it has no instance for to the TUN/TAP). Until the 5 s reconciliation frees the MAC
after our bug in a release (fault40's case: the switch's forget skipped), the switch dropped it
as "no route" instead -- the frame's fate depended on whether the server had met a bug, and the
host's bridge (the bridged LAN, where such a MAC may well be now) never saw it."""
from __future__ import annotations

from appliance.openvpn.server import ServerDispatcher
from tests.gateway.conftest import World, client_conf
from tests.gateway.test_tap_server import CLIENT_MAC, frame, tap_conf
from tests.gateway.test_tunnel import _up

OTHER_MAC = bytes.fromhex("020000000a02")


def test_a_frame_to_a_gone_holders_mac_goes_to_the_tap(pki, monkeypatch):
    w = World()
    gw = w.add_server(tap_conf(pki, "client-to-client\n"))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    stun, c0tun, c1tun = w.server_net.tun, w.client_nets[0].tun, w.client_nets[1].tun
    for tun, mac in ((c0tun, CLIENT_MAC), (c1tun, OTHER_MAC)):
        hello = frame(b"\xff" * 6, mac, b"hello " + mac.hex().encode())
        tun.inject(hello)
        assert w.run(lambda: hello in stun.written, max_time=5)
    old = gw.dp.macs.owner[CLIENT_MAC]
    d = gw.d

    real = ServerDispatcher._forget_steps

    def fails_once(self, r):  # noqa: ANN001
        monkeypatch.setattr(ServerDispatcher, "_forget_steps", real)
        raise RuntimeError("fault on the first line of _forget_steps")
    monkeypatch.setattr(ServerDispatcher, "_forget_steps", fails_once)
    d.end(old, "a test's end")
    assert not old.alive and gw.dp.macs.owner.get(CLIENT_MAC) is old     # (until the reconciliation)

    before = gw.dp.stats["no route"]
    to_gone = frame(CLIENT_MAC, OTHER_MAC, b"to the gone one's MAC")
    c1tun.inject(to_gone)
    assert w.run(lambda: to_gone in stun.written, max_time=2)       # as to a free MAC
    assert to_gone not in c0tun.written
    assert gw.dp.stats["no route"] == before
