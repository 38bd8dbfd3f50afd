"""The services around the client (LAN DHCP/DNS, host DNS, status) hear of every tunnel change
through gateway/observers.py, and one that fails cannot touch the tunnel."""
from __future__ import annotations

from appliance.gateway.observers import TunnelState
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import ping_both_ways


class Recorder:
    def __init__(self) -> None:
        self.states: list[TunnelState] = []
        self.pump = None
        self.counters = None
        self.closed = False

    def attach(self, pump, counters) -> None:
        self.pump, self.counters = pump, counters

    def tunnel_changed(self, state: TunnelState) -> None:
        self.states.append(state)

    def close(self) -> None:
        self.closed = True


class Broken(Recorder):
    def tunnel_changed(self, state: TunnelState) -> None:
        raise ValueError("a LAN service bug")


def test_observers_hear_up_with_the_push_and_down_and_a_broken_one_changes_nothing(pki):
    w = World()
    w.add_server(server_conf(pki, extra='push "dhcp-option DNS 198.19.0.1"\npush "dhcp-option DOMAIN corp.test"'))
    rec, broken = Recorder(), Broken()
    c = w.add_client(client_conf(pki), observers=(broken, rec))
    assert rec.pump is c.pump, "attach() gives the observer the client's own pump"
    assert w.run(lambda: any(s.up for s in rec.states), max_time=30), "no 'up' reached the observer"
    up = rec.states[-1]
    assert up.pushed is not None and up.pushed.dns == ["198.19.0.1"]
    assert ("DOMAIN", "corp.test") in up.pushed.dhcp_options
    assert up.remote.endswith("/udp") and "198.18.0.1" in up.remote
    ping_both_ways(w)                       # the broken observer did not take the tunnel down
    cnt = rec.counters()
    assert cnt.bytes_in > 0 and cnt.bytes_out > 0 and cnt.wire_in > cnt.bytes_in and cnt.connections == 1
    assert c.faults.counts, "the broken observer's exception is counted as our bug"
    server, w.server = w.server, None       # the server goes silent: the pushed ping-restart 60 fires
    w.run_for(70)
    assert rec.states[-1].up is False and rec.states[-1].pushed is None, "no 'down' reached the observer"
    w.server = server
    assert w.run(lambda: rec.states[-1].up, max_time=60), "no second 'up' after the server came back"
    assert rec.counters().connections == 2
    c._cleanup()
    assert rec.closed and broken.closed


class Counting(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.logged = 0

    def log_counters(self) -> None:
        self.logged += 1


class BrokenCounting(Counting):
    def log_counters(self) -> None:
        raise ValueError("a LAN service's counters bug")


def test_sigusr2_has_each_service_with_counters_log_them_and_a_broken_one_changes_nothing(pki):
    """SIGUSR2 (the signal, or management's `signal SIGUSR2`) logs the client's counters and has
    each observer that keeps its own (the LAN's DNS forwarder, DHCP server) log them too, at once:
    their periodic lines come at most every 30 s. One that raises is counted; the others still log."""
    import signal
    w = World()
    w.add_server(server_conf(pki))
    plain, broken, counting = Recorder(), BrokenCounting(), Counting()
    c = w.add_client(client_conf(pki), observers=(plain, broken, counting))
    assert w.run(lambda: any(s.up for s in plain.states), max_time=30)
    c._on_noted(signal.SIGUSR2)
    assert counting.logged == 1
    assert c.faults.counts.get("internal error") == 1, c.faults.counts      # the broken one, counted
    c.log_counters()
    assert counting.logged == 2
    ping_both_ways(w)
    c._cleanup()
