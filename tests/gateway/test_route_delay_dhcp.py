"""route-delay with route-gateway dhcp on a tap client (gateway/route_delay.py), the client's
side on in-memory ports: the routes that waited go in once the delay is over, with the router a
DHCP ACK gave by then; route-up runs then (not at tunnel-up) with route_vpn_gateway and
redirect_gateway as 2.6's do_route leaves them; CONNECTED only after it. The tunnel's own part
(which routes wait, and how they go in) is checked beside Debian's client in
tests/interop/test_tap_dhcp_vs_openvpn.py."""
from __future__ import annotations

import pytest

from appliance.gateway import client as client_mod
from appliance.gateway.client_scripts import ClientScripts
from lab.fakes import FakeTunnelNetwork
from lab import gateway_world
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE, Tap
from tests.gateway.test_client_scripts import _records, _recorder

DELAY = 5.0


class WaitingNet(FakeTunnelNetwork):
    """The tunnel's side as TunnelNetwork has it with route-gateway dhcp and route-delay: the
    first push's routes wait; add_waiting_routes records the router they went in with."""

    def __init__(self, net) -> None:
        super().__init__(net)
        self.routes_waiting = None
        self.added: list = []

    def apply(self, pushed, remote_ip: str) -> None:
        super().apply(pushed, remote_ip)
        if self.applied == 1:
            self.routes_waiting = (pushed, remote_ip, False)

    def add_waiting_routes(self, router):
        w, self.routes_waiting = self.routes_waiting, None
        if w is None:
            return False
        self.added.append(router)
        return router is not None


@pytest.fixture(autouse=True)
def inline(monkeypatch):
    monkeypatch.setattr(client_mod, "ClientScripts", lambda: ClientScripts(time_limit=5.0, inline=True))
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", WaitingNet)


def _client(pki, tmp_path, log):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE))
    scripts = "".join(f"{d} {_recorder(tmp_path, log, d)}\n" for d in ("up", "route-up"))
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\nscript-security 2\n"
                                 f"route-delay {int(DELAY)}\n" + scripts))
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap


@pytest.mark.parametrize("router", ["198.19.1.1", None])
def test_route_up_waits_for_the_delay_and_gets_the_learned_router(pki, tmp_path, router):
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert net.routes_waiting is not None and net.added == []
    if router is not None:
        c._dhcp_router(router)              # the ACK on the tap, before the delay is over
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=30)
    assert w.clock() - up_at >= DELAY - 0.5, "CONNECTED before route-delay was over"
    assert net.added == [router]
    names = [g[0] for g in _records(log)]
    assert names == ["up", "route-up"], names
    up_env, rup_env = _records(log)[0][2], _records(log)[1][2]
    # (this in-memory server pushes a tun ifconfig: route_vpn_gateway is its remote until a router comes)
    assert rup_env.get("route_vpn_gateway") == (router or up_env.get("route_vpn_gateway"))
    assert up_env.get("route_vpn_gateway") != "198.19.1.1"
    assert rup_env["redirect_gateway"] == ("1" if router else "0")
    c._cleanup()


class NoAckNet(WaitingNet):
    """As TunnelNetwork with a redirect pushed (tapredir48): no DHCP router by route-delay's end
    fails the routes that waited, naming why (tests/unit/test_tap_redirect_without_gateway.py
    checks that part against the kernel)."""

    def add_waiting_routes(self, router):
        if router is None and self.routes_waiting is not None:
            self.routes_waiting = None
            self.added.append(router)
            raise RuntimeError("redirect-gateway via tap0: no DHCP ACK gave a router within route-delay 5 s "
                               "(route-gateway dhcp); the tunnel is not brought up without it")
        return super().add_waiting_routes(router)


def test_no_dhcp_router_by_the_delays_end_ends_the_connection_before_route_up_and_connected(
        pki, tmp_path, monkeypatch, caplog):
    # The client's part: the connection ends at the delay's end -- no route-up, never CONNECTED
    # with the redirect missing -- and the client starts over after its restart pause.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", NoAckNet)
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    assert w.run(lambda: net.applied >= 2, max_time=60), "the client did not start over"
    connected_then = [x for x in tap.got if ",CONNECTED," in x]
    assert net.added == [None]
    assert "cannot add the routes route-delay held back: redirect-gateway via tap0: no DHCP ACK" in caplog.text
    connected = connected_then
    names = [g[0] for g in _records(log)]
    assert names[:2] == ["up", "up"], names        # no route-up before the next connection's up
    assert not connected, connected
    c._cleanup()


class AloneNet(NoAckNet):
    """As TunnelNetwork with route-gateway dhcp and a redirect but no route-delay (tapredir49,
    route_delay.waits_for_router_alone): every push's routes wait for a DHCP router alone."""

    def apply(self, pushed, remote_ip: str) -> None:
        FakeTunnelNetwork.apply(self, pushed, remote_ip)
        self.routes_waiting = (pushed, remote_ip, False)
        self.router_alone = True


def _client_without_delay(pki, tmp_path, log):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE))
    scripts = "".join(f"{d} {_recorder(tmp_path, log, d)}\n" for d in ("up", "route-up"))
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\nscript-security 2\n" + scripts))
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap


def test_without_route_delay_the_routes_wait_for_the_dhcp_router_and_go_in_when_it_comes(
        pki, tmp_path, monkeypatch, caplog):
    # A bridged profile without route-delay works unchanged: route-up and CONNECTED wait for the
    # router (not a fixed delay: it ends the wait when it comes), then go on via it.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", AloneNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert w.run(lambda: False, max_time=3) is False            # 3 s of fake time: still waiting
    assert net.routes_waiting is not None and net.added == []
    assert not any(",CONNECTED," in x for x in tap.got)
    c._dhcp_router("198.19.1.1")                # the ACK on the tap
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=10)
    assert w.clock() - up_at < 10, "the wait did not end at the router"
    assert net.added == ["198.19.1.1"]
    names = [g[0] for g in _records(log)]
    assert names == ["up", "route-up"], names
    rup_env = _records(log)[1][2]
    assert rup_env.get("route_vpn_gateway") == "198.19.1.1" and rup_env["redirect_gateway"] == "1"
    assert "routes in via the DHCP router 198.19.1.1" in caplog.text
    c._cleanup()


def test_without_route_delay_no_dhcp_router_within_the_window_ends_the_connection(
        pki, tmp_path, monkeypatch, caplog):
    # None by ROUTER_WAIT (2.6's default route-delay window): as at route-delay's end
    # (tapredir48), the connection ends -- no route-up, never CONNECTED -- and starts over.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", AloneNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert w.run(lambda: net.added == [None], max_time=60)
    assert client_mod.ROUTER_WAIT - 0.5 <= w.clock() - up_at <= client_mod.ROUTER_WAIT + 2
    assert w.run(lambda: net.applied >= 2, max_time=60), "the client did not start over"
    assert "cannot add the routes route-delay held back" in caplog.text
    names = [g[0] for g in _records(log)]
    assert "route-up" not in names[:2], names
    assert not any(",CONNECTED," in x for x in tap.got)
    c._cleanup()


def test_without_route_delay_the_routes_wait_for_the_leased_address_after_the_router(pki, tmp_path, monkeypatch):
    # The ACK's router is read on its way to the tap, before the DHCP client there takes the
    # ACK's address (seen against Debian's bridge: the routes' add was refused, ENETUNREACH):
    # the routes wait for the address too, polled within the same deadline.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", AloneNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    net.router_on_link_now = False
    c._dhcp_router("198.19.1.1")
    assert w.run(lambda: False, max_time=2) is False
    assert net.added == [] and not any(",CONNECTED," in x for x in tap.got)
    net.router_on_link_now = True               # the DHCP client put the address on the tap
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=5)
    assert net.added == ["198.19.1.1"]
    c._cleanup()


def test_without_route_delay_a_router_the_tap_still_holds_ends_the_wait_at_once(pki, tmp_path, monkeypatch):
    # review49e: a reconnect whose tap keeps its lease (the router known from the last ACK; the
    # DHCP client renews only at half the lease, and an ACK with the same router is no news)
    # goes on via that router at once -- not after ROUTER_WAIT with the redirect held meanwhile.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", AloneNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    c.dhcp_router = "198.19.1.1"                # learned on the last connection
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=40)
    assert w.clock() - up_at < 5, f"the known router waited {w.clock() - up_at:.1f} s"
    assert net.added == ["198.19.1.1"]
    c._cleanup()



class BroadcastRouterNet(AloneNet):
    """As AloneNet, the tap's network a /24 around 198.19.1.0: its broadcast address is no
    router on it (tunnel.py router_on_link asks RouteSet.on_link, which says so; the kernel
    refuses a route via it, tests/unit/test_tap_redirect_without_gateway.py)."""

    BROADCAST = "198.19.1.255"

    def router_on_link(self, router: str) -> bool:
        return router != self.BROADCAST


def test_a_forged_ack_naming_the_tap_networks_broadcast_ends_that_connection_only(pki, tmp_path, monkeypatch,
                                                                                    caplog):
    # atk50: one forged DHCP ACK (any host on the bridged LAN, or the server) naming the tap
    # subnet's broadcast address as the router. It was taken as on the tap's network at once, the
    # kernel refused the halves via it ("the kernel refused its routes (Invalid argument)"), the
    # connection ended -- and, as "a router the tap still holds", every reconnect went via it at
    # once and ended the same way: a restart loop every restart pause. Now it is no router: the
    # wait runs out, that connection ends, and the next ACK's router goes in.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", BroadcastRouterNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    c._dhcp_router(BroadcastRouterNet.BROADCAST)
    assert w.run(lambda: net.added == [None], max_time=60), f"routes went in via {net.added}"
    assert client_mod.ROUTER_WAIT - 0.5 <= w.clock() - up_at <= client_mod.ROUTER_WAIT + 2
    assert "the DHCP router 198.19.1.255 is not on the tap's network" in caplog.text
    assert not any(",CONNECTED," in x for x in tap.got)
    assert w.run(lambda: net.applied >= 2, max_time=60), "the client did not start over"
    c._dhcp_router("198.19.1.1")                # the LAN's real router, at the next ACK
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=40)
    assert net.added == [None, "198.19.1.1"]
    c._cleanup()


class LanNet(AloneNet):
    """As AloneNet, the tap on 198.19.1.0/24 once the DHCP client there took its lease
    (`leased`); before that no router is on its network."""

    leased = False

    def router_on_link(self, router: str) -> bool:
        return self.leased and router.startswith("198.19.1.") and router != "198.19.1.255"


@pytest.mark.parametrize("forged", ["0.0.0.0", "255.255.255.255", "224.0.0.1", "10.9.9.9", "198.19.1.255"])
def test_a_forged_ack_after_the_real_one_does_not_replace_its_router(pki, tmp_path, monkeypatch, caplog, forged):
    # atk50: the LAN's real ACK comes, its router is read on the way to the tap, and the wait
    # polls for the DHCP client there to take the address; a forged ACK (any host on the bridged
    # LAN sees the exchange: it is broadcast) follows at once naming a router no route can go
    # via. The last ACK's router was the one: 0.0.0.0 or a broadcast ended the connection at the
    # next poll, one off the tap's network held the redirect for 30 s and ended it (or, the
    # broadcast, went in and was refused). Now a router no route can go via is not taken, and
    # the wait goes via the newest router that is on the tap's network once the lease is in.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", LanNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    c._dhcp_router("198.19.1.1")                # the real ACK, on its way to the tap
    c._dhcp_router(forged)                      # the forged one, right after it
    assert w.run(lambda: False, max_time=1) is False
    assert net.added == [] and net.applied == 1
    net.leased = True                           # the DHCP client on the tap took the real lease
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=10), net.added
    assert w.clock() - up_at < 5
    assert net.added == ["198.19.1.1"] and net.applied == 1
    rup_env = _records(log)[1][2]
    assert rup_env.get("route_vpn_gateway") == "198.19.1.1"
    c._cleanup()


class LanDelayNet(WaitingNet):
    """As WaitingNet (route-delay), the tap on 198.19.1.0/24 with its lease in."""

    def router_on_link(self, router: str) -> bool:
        return router.startswith("198.19.1.") and router != "198.19.1.255"


@pytest.mark.parametrize("forged", ["198.19.1.255", "10.9.9.9"])
def test_with_route_delay_a_forged_ack_after_the_real_one_does_not_replace_its_router(pki, tmp_path, monkeypatch,
                                                                                     forged):
    # review50b: atk50's choice (the newest router on the tap's network) was made in the wait
    # without route-delay only. With `route-delay N` the last ACK's router went in: a forged ACK
    # after the real one (the tap network's broadcast, or a router off it) had the kernel refuse
    # the halves, the connection ended -- and every reconnect, waiting N s again, reused it.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", LanDelayNet)
    log = tmp_path / "log"
    w, c, tap = _client(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    c._dhcp_router("198.19.1.1")                # the real ACK
    c._dhcp_router(forged)                      # the forged one, right after it
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=30)
    assert net.added == ["198.19.1.1"]
    assert _records(log)[1][2].get("route_vpn_gateway") == "198.19.1.1"
    c._cleanup()


@pytest.mark.parametrize("forged", ["0.0.0.0", "255.255.255.255"])
def test_a_reconnect_after_a_forged_ack_goes_via_the_known_router_at_once(pki, tmp_path, monkeypatch, forged):
    # review50b: the last connection's real ACK, then a forged one naming a router no route can
    # go via (atk50's _dhcp_router filter: no test failed without it). Taken, it was "the
    # router" at the reconnect, which then held the redirect the whole 30 s wait before the
    # history's on-link router went in; not taken, the known router goes in at once.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", LanNet)
    monkeypatch.setattr(LanNet, "leased", True)             # the tap keeps its lease
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    c._dhcp_router("198.19.1.1")                # learned on the last connection ...
    c._dhcp_router(forged)                      # ... and a forged ACK after it
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=40)
    assert w.clock() - up_at < 5, f"the known router waited {w.clock() - up_at:.1f} s"
    assert net.added == ["198.19.1.1"]
    c._cleanup()


class CountingLanNet(LanNet):
    """As LanNet, counting the looks at which router is on the tap's network (each one asks the
    kernel: RouteSet.on_link's address and route dumps)."""

    looks = 0

    def router_on_link(self, router: str) -> bool:
        self.looks += 1
        return super().router_on_link(router)


def test_acks_naming_routers_in_turn_cost_at_most_a_look_per_poll(pki, tmp_path, monkeypatch):
    # review50b: while the routes wait for a router on the tap's network, every ACK with a new
    # router had the wait look at once -- up to two kernel dumps per kept router (4) -- so a host
    # on the bridged LAN sending ACKs naming routers in turn (the DHCP reply budget lets ~200 a
    # second through) had hundreds of dumps a second for the 30 s wait. Now a look comes at most
    # once per ROUTER_ON_LINK_POLL, and the routes still go in at the first poll after the lease.
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", CountingLanNet)
    log = tmp_path / "log"
    w, c, tap = _client_without_delay(pki, tmp_path, log)
    net = w.client_nets[0]
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    c._dhcp_router("198.19.1.1")                # the real ACK, its lease not yet on the tap
    start, acks = w.clock(), 200
    for i in range(acks):                       # one second of forged ACKs, 5 ms apart, each its own wake-up
        c._dhcp_router(f"10.9.9.{1 + i % 8}")
        w.clock.t += 0.005
        w.run(lambda: False, max_time=0, max_steps=20)      # what is due by now, the clock held
    seconds = w.clock() - start
    kept = client_mod.DHCP_ROUTERS_KEPT
    assert net.looks <= kept * (seconds / client_mod.ROUTER_ON_LINK_POLL + 2), \
        f"{net.looks} looks for {acks} ACKs in {seconds:.2f} s"
    assert net.added == [] and not any(",CONNECTED," in x for x in tap.got)
    c._dhcp_router("198.19.1.1")                # the real router again (a renewal) ...
    net.leased = True                           # ... and the lease on the tap
    assert w.run(lambda: any(",CONNECTED," in x for x in tap.got), max_time=5), net.added
    assert net.added == ["198.19.1.1"]
    c._cleanup()
