"""route-delay on a tun client (gateway/route_delay.py), the client's side on in-memory ports with a
fake clock, in the order Debian's 2.6.14 client gives (tests/interop/test_route_delay_vs_openvpn.py):
at tunnel-up the up script and >STATE:ASSIGN_IP, no route; N seconds later the routes,
>STATE:ADD_ROUTES, >UPDOWN:UP, route-up (still as root: the drop to `user` after it), then
>STATE:CONNECTED. A pushed route-delay replaces the profile's, route-nopull or not."""
from __future__ import annotations

import pytest

from appliance.gateway import client as client_mod
from appliance.gateway.client_scripts import END_ROOT, ClientScripts
from appliance.gateway.route_delay import delay_in_effect
from lab.fakes import FakeTunnelNetwork
from lab import gateway_world
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_client_mgmt import ROUTE, Tap
from tests.gateway.test_client_scripts import _records, _recorder


class DelayNet(FakeTunnelNetwork):
    """TunnelNetwork's decision (route_delay.delay_in_effect): with a delay in effect the push's
    routes wait; add_waiting_routes records when they went in."""

    opts = None

    def __init__(self, net) -> None:
        super().__init__(net)
        self.routes_waiting = None
        self.added_at: list[float] = []
        self.clock = None

    reopened = False

    def device_reopened(self) -> None:
        self.reopened = True

    def apply(self, pushed, remote_ip: str) -> None:
        # As TunnelNetwork: the same push again (a reconnect) changes nothing, a routes' wait
        # that a reconnect cut short included -- but after the device was closed the 2.6 way
        # (device_reopened), when the routes wait the delay again, kept in place meanwhile.
        key = (pushed.ifconfig, tuple(pushed.routes), getattr(pushed, "route_delay", None))
        same, self.key = key == getattr(self, "key", None), key
        reopened, self.reopened = self.reopened, False
        super().apply(pushed, remote_ip)
        if same:
            if reopened and self.routes_waiting is None and delay_in_effect(self.opts, pushed) is not None:
                self.routes_waiting = (pushed, remote_ip, False, "kept")
            return
        self.routes_waiting = (pushed, remote_ip, False, "routes") \
            if delay_in_effect(self.opts, pushed) is not None else None

    def add_waiting_routes(self, router):
        w, self.routes_waiting = self.routes_waiting, None
        if w is None:
            return None
        self.added_at.append(self.clock())
        return False


class Recording(ClientScripts):
    """The script runner, with the order things were queued in (END_ROOT: the drop to `user`)."""

    def __init__(self) -> None:
        super().__init__(time_limit=5.0, inline=True)
        self.kinds: list[str] = []

    def submit(self, kind, argv, env, keep=False) -> bool:
        self.kinds.append(kind)
        return super().submit(kind, argv, env, keep)


@pytest.fixture(autouse=True)
def inline(monkeypatch):
    monkeypatch.setattr(client_mod, "ClientScripts", Recording)
    monkeypatch.setattr(gateway_world, "FakeTunnelNetwork", DelayNet)


def _client(pki, tmp_path, log, profile: str, push: str = ""):
    w = World()
    w.add_server(server_conf(pki, extra=ROUTE + push))
    scripts = "".join(f"{d} {_recorder(tmp_path, log, d)}\n" for d in ("up", "route-up"))
    c = w.add_client(client_conf(pki, extra=f"management {tmp_path}/c.sock unix\nmanagement-up-down\n"
                                 f"script-security 2\n{profile}" + scripts))
    net = w.client_nets[0]
    net.opts, net.clock = c.opts, w.clock
    tap = Tap()
    c.mgmt.mgr.conns.append(tap)
    tap.state_on = True
    return w, c, tap, net


def _events(tap) -> list[str]:
    """The state changes and UPDOWN lines the management client heard, in order."""
    out = []
    for x in tap.got:
        if x.startswith(">STATE:"):
            out.append(x.split(",")[1])
        elif x in (">UPDOWN:UP", ">UPDOWN:DOWN"):
            out.append(x[1:])
    return out


@pytest.mark.parametrize("profile, push, delay", [
    ("route-delay 6\n", "", 6),                                     # the profile's
    ("route-delay 6 1\n", "", 6),                                   # W never delays it further (Linux)
    ("route-delay 20\n", 'push "route-delay 3"\n', 3),              # a pushed one replaces it
    ("route-nopull\n", 'push "route-delay 4"\n', 4),                # OPT_P_ROUTE_EXTRAS: taken with route-nopull
])
def test_routes_updown_route_up_and_connected_wait_for_the_delay(pki, tmp_path, profile, push, delay):
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, profile, push)
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    up_at = w.clock()
    assert net.routes_waiting is not None and net.added_at == []
    assert _events(tap)[-1] == "ASSIGN_IP" and "UPDOWN:UP" not in _events(tap)
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    assert len(net.added_at) == 1 and delay - 0.5 <= net.added_at[0] - up_at <= delay + 1.5
    ev = _events(tap)
    tail = ev[ev.index("ASSIGN_IP"):]
    assert tail == ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"] if "route-nopull" not in profile \
        else tail == ["ASSIGN_IP", "UPDOWN:UP", "CONNECTED"], ev
    assert [r[0] for r in _records(log)] == ["up", "route-up"]
    assert "redirect_gateway" in _records(log)[1][2] and "redirect_gateway" not in _records(log)[0][2]
    # route-up as root: the drop to `user` (END_ROOT) comes after it, as 2.6's.
    kinds = [k for k in c.scripts.runner.kinds if k in ("up", "route-up", END_ROOT)]
    assert kinds == ["up", "route-up", END_ROOT], kinds
    c._cleanup()


def test_without_route_delay_nothing_waits(pki, tmp_path):
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "")
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=20)
    assert net.added_at == [] and net.routes_waiting is None
    ev = _events(tap)        # as Debian's client without route-delay
    assert ev[ev.index("ASSIGN_IP"):] == ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"], ev
    assert c.scripts.runner.kinds[-3:] == ["up", "route-up", END_ROOT]
    c._cleanup()


def test_a_pushed_delay_of_years_keeps_its_routes_out_and_polls_nothing(pki, tmp_path):
    """A hostile (or mistaken) server's `route-delay 2147483647`: its routes stay out (as 2.6's),
    and nothing wakes the loop for it meanwhile (CONNECTED used to be looked for 20 times a
    second while route-delay was armed)."""
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "", 'push "route-delay 2147483647"\n')
    calls: list[float] = []
    announce = c._announce_up
    c._announce_up = lambda *a: (calls.append(w.clock()), announce(*a))
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    w.run_for(120)
    assert net.added_at == [] and net.routes_waiting is not None
    assert "CONNECTED" not in _events(tap) and "UPDOWN:UP" not in _events(tap)
    assert len(calls) <= 2, calls
    c._cleanup()


def _reconnect(w, c, tap) -> list[str]:
    """A SIGUSR1-style reconnect (c.user_restart); -> the events of the new connection up to
    CONNECTED."""
    tap.got.clear()
    c.user_restart()
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    return _events(tap)


def test_a_persisted_device_with_the_same_push_says_neither_assign_ip_nor_add_routes(pki, tmp_path):
    """2.6 (init.c do_up): a reconnect that keeps its device (persist-tun, the same push) opens
    nothing, so neither do_ifconfig's ASSIGN_IP nor do_route's ADD_ROUTES: CONNECTED at once."""
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "persist-tun\nroute-delay 5\n")
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    ev = _reconnect(w, c, tap)
    assert "ASSIGN_IP" not in ev and "ADD_ROUTES" not in ev and "UPDOWN:UP" not in ev, ev
    assert len(net.added_at) == 1                   # no second delay, nothing added again
    c._cleanup()


def test_a_changed_push_reopens_the_device_and_says_both_again(pki, tmp_path):
    """2.6: "Pulled options changed on restart": the device closed and opened again, so
    ASSIGN_IP then (after the delay) ADD_ROUTES, as on a first connection."""
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "persist-tun\nroute-delay 5\n")
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    w.server.st.push.append("route 198.18.101.0 255.255.255.0")
    ev = _reconnect(w, c, tap)
    assert ev.index("UPDOWN:DOWN") < ev.index("ASSIGN_IP"), ev
    assert ev[ev.index("ASSIGN_IP"):] == ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"], ev
    assert len(net.added_at) == 2
    c._cleanup()


def test_without_persist_tun_a_reconnect_waits_the_delay_again(pki, tmp_path):
    """2.6 without persist-tun closes its device at every restart (SIGUSR1, ping-restart), so the
    next connection opens it again (init.c do_up: did_open_tun) and route-delay's timer starts
    anew: ASSIGN_IP and `up` at tunnel-up, then N seconds later ADD_ROUTES, >UPDOWN:UP, route-up
    and CONNECTED -- as on the first connection, with the same push too. Ours keeps its TUN and
    its routes meanwhile (nothing goes out in clear), but waits the delay as 2.6 does."""
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "route-delay 6\n")
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    assert [r[0] for r in _records(log)] == ["up", "route-up"]
    tap.got.clear()
    c.user_restart()
    assert w.run(lambda: "ASSIGN_IP" in _events(tap), max_time=60)
    up_at = w.clock()
    assert "UPDOWN:UP" not in _events(tap) and "CONNECTED" not in _events(tap), _events(tap)
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    ev = _events(tap)
    assert ev.index("UPDOWN:DOWN") < ev.index("ASSIGN_IP"), ev
    assert ev[ev.index("ASSIGN_IP"):] == ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"], ev
    assert len(net.added_at) == 2 and 5.5 <= net.added_at[1] - up_at <= 7.5, (net.added_at, up_at)
    assert w.run(lambda: len(_records(log)) >= 4, max_time=10)
    assert [r[0] for r in _records(log)] == ["up", "route-up", "up", "route-up"]
    assert "redirect_gateway" in _records(log)[3][2]
    c._cleanup()


def test_without_persist_tun_each_connection_says_both(pki, tmp_path):
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "")
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=60)
    ev = _reconnect(w, c, tap)
    assert ev[ev.index("ASSIGN_IP"):] == ["ASSIGN_IP", "ADD_ROUTES", "UPDOWN:UP", "CONNECTED"], ev
    c._cleanup()


def test_a_reconnect_during_the_delay_still_adds_the_routes(pki, tmp_path):
    """Where ours keeps its own way: 2.6's restart clears route_wakeup and a persisted device
    (persist-tun, the same push) is never given its routes (do_route is not run again; "Initialization
    Sequence Completed" with the routes missing until a restart that reopens it). Ours waits
    the delay again and adds them, ADD_ROUTES, >UPDOWN:UP and route-up then."""
    log = tmp_path / "log"
    w, c, tap, net = _client(pki, tmp_path, log, "persist-tun\nroute-delay 30\n")
    assert w.run(lambda: log.exists() and "== up" in log.read_text(), max_time=20)
    w.run_for(5)
    assert net.added_at == [] and net.routes_waiting is not None
    tap.got.clear()
    c.user_restart()
    assert w.run(lambda: "CONNECTED" in _events(tap), max_time=90)
    ev = _events(tap)
    assert "ASSIGN_IP" not in ev and ev[-3:] == ["ADD_ROUTES", "UPDOWN:UP", "CONNECTED"], ev
    assert len(net.added_at) == 1
    assert [r[0] for r in _records(log)] == ["up", "route-up"]
    c._cleanup()
