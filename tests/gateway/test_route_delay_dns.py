"""route-delay and the pushed DNS (gateway/observers.py `routes_wait` / `dns_up`), the client's side
on in-memory ports with a fake clock. OpenVPN 2.6.14 runs the `up` script at tunnel-up (init.c
do_open_tun), before route-delay's timer starts: its users' update-resolv-conf sets the pushed DNS
(foreign_option_N) then, and only the routes, route-up and "Initialization Sequence Completed"
wait N seconds. So the host's resolver (and the LAN's DNS services) take the pushed DNS at
tunnel-up, while what needs the routes (systemd's "Completed", the services reading `up`) waits
for CONNECTED. Without route-delay both are one moment, as before."""
from __future__ import annotations

import socket

import pytest

from appliance.gateway import client as client_mod
from appliance.host.resolver import HostDns
from appliance.host.sdnotify import COMPLETED, SdNotify
from lab import gateway_world
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE, Tap
from tests.gateway.test_client_scripts import _recorder
from tests.gateway.test_observers import Recorder
from tests.gateway.test_route_delay_tun import DelayNet, Recording, _events

DNS = 'push "dhcp-option DNS 198.18.100.53"\npush "dhcp-option DOMAIN vpn.example"\n'


@pytest.fixture(autouse=True)
def inline(monkeypatch):
    monkeypatch.setattr(client_mod, "ClientScripts", Recording)
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", DelayNet)


class Resolver:
    """The host's resolver (host/resolver.py Backend), recording when it was told what."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, str, tuple]] = []

    def apply(self, dns, link: str) -> None:
        self.calls.append((self.clock(), "apply", dns.servers))

    def restore(self) -> None:
        self.calls.append((self.clock(), "restore", ()))


class Systemd:
    """A NOTIFY_SOCKET: what SdNotify sent, read without waiting."""

    def __init__(self, path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def got(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


def _client(pki, tmp_path, profile: str):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE + DNS))
    resolver = Resolver(w.clock)
    host_dns = HostDns(None, backend=lambda: resolver, threaded=False)
    systemd = Systemd(tmp_path / "notify")
    notify = SdNotify(str(tmp_path / "notify"))
    rec = Recorder()
    log = tmp_path / "log"
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\nscript-security 2\n"
                                 f"up {_recorder(tmp_path, log, 'up')}\n{profile}"),
                     observers=(host_dns, notify, rec))
    net = w.client_nets[0]
    net.opts, net.clock = c.opts, w.clock
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap, net, resolver, systemd, rec, log


def test_pushed_dns_is_set_at_tunnel_up_and_the_rest_waits_for_the_routes(pki, tmp_path):
    w, c, tap, net, resolver, systemd, rec, log = _client(pki, tmp_path, "route-delay 30\n")
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    # Tunnel-up: the host's resolver has the pushed DNS within a second, as 2.6's up script sets
    # it; the routes, CONNECTED and systemd's "Completed" are still 30 s away.
    assert w.run(lambda: any(k == "apply" for _, k, _ in resolver.calls), max_time=1), resolver.calls
    applied = [(t, s) for t, k, s in resolver.calls if k == "apply"]
    assert applied[0][1] == ("198.18.100.53",) and applied[0][0] - up_at < 1
    assert net.added_at == [] and "CONNECTED" not in _events(tap)
    assert COMPLETED not in systemd.got()
    assert not any(s.up for s in rec.states), "a service reading `up` heard it before the routes"
    early = [s for s in rec.states if s.dns_up]
    assert len(early) == 1 and early[0].routes_wait and early[0].pushed.dns == ["198.18.100.53"]
    # CONNECTED 30 s on: the routes, then the services waiting for them; the DNS is not set again.
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    assert len(net.added_at) == 1 and 29 <= net.added_at[0] - up_at <= 31.5
    assert w.run(lambda: any(s.up for s in rec.states), max_time=5)
    assert [s.up for s in rec.states if s.dns_up] == [False, True]
    assert COMPLETED in systemd.got()
    assert [k for _, k, _ in resolver.calls if k == "apply"] == ["apply"], resolver.calls
    c._cleanup()
    assert resolver.calls[-1][1] == "restore"


def test_without_route_delay_the_dns_and_connected_are_one_moment(pki, tmp_path):
    w, c, tap, net, resolver, systemd, rec, log = _client(pki, tmp_path, "")
    assert w.run(lambda: any(s.up for s in rec.states), max_time=20)
    assert net.added_at == [] and net.routes_waiting is None
    # One notification up, with CONNECTED (as before route-delay had two steps).
    assert [s for s in rec.states if s.dns_up] == [rec.states[-1]] and not rec.states[-1].routes_wait
    ev = _events(tap)
    assert ev[ev.index("ASSIGN_IP"):] == ["ASSIGN_IP", "ADD_ROUTES", "CONNECTED"], ev
    assert [s for _, k, s in resolver.calls if k == "apply"] == [("198.18.100.53",)]
    assert COMPLETED in systemd.got()
    c._cleanup()


@pytest.mark.parametrize("failures, applies", [(1, 2), (5, 2)])
def test_an_apply_that_failed_at_tunnel_up_is_tried_once_more_at_connected(pki, tmp_path, failures, applies):
    """A resolver not ready at tunnel-up (route-delay's early DNS) is asked again at CONNECTED,
    once: the same settings are otherwise not applied twice. One that keeps failing is not
    hammered."""
    w, c, tap, net, resolver, systemd, rec, log = _client(pki, tmp_path, "route-delay 30\n")
    left = [failures]
    apply = resolver.apply

    def flaky(dns, link):
        apply(dns, link)
        if left[0]:
            left[0] -= 1
            raise OSError("resolver not ready")
    resolver.apply = flaky
    assert w.run(lambda: any(k == "apply" for _, k, _ in resolver.calls), max_time=30)
    assert "CONNECTED" not in _events(tap)
    assert w.run(lambda: any(s.up for s in rec.states), max_time=60)
    w.run_for(5)
    assert [s for _, k, s in resolver.calls if k == "apply"] == [("198.18.100.53",)] * applies, resolver.calls
    c._cleanup()
