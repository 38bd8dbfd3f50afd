"""The status line on the console and the client's status file, on a fake pump and clock."""
from __future__ import annotations

import datetime
import logging

from appliance.gateway.client_status import ClientStatusFile, render_client
from appliance.gateway.loop import Pump
from appliance.gateway.observers import ClientCounters, TunnelState
from appliance.lan.status_line import StatusLine, format_line


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class NoWait:
    def register(self, *a): pass
    def modify(self, *a): pass
    def unregister(self, *a): pass
    def wait(self, timeout): return []
    def close(self): pass


def advance(pump: Pump, clock: Clock, seconds: float, step: float = 1.0) -> None:
    end = clock.t + seconds
    while clock.t < end:
        clock.t = min(end, clock.t + step)
        pump.step(block=False)


def parse_statistics(text: str) -> dict[str, str]:
    """What tools do with a client status file (the same parse tests/interop applies to OpenVPN's)."""
    lines = text.splitlines()
    assert lines[0] == "OpenVPN STATISTICS" and lines[-1] == "END"
    out = dict(ln.split(",", 1) for ln in lines[1:-1])
    datetime.datetime.strptime(out["Updated"], "%Y-%m-%d %H:%M:%S")
    return out


UP = TunnelState(True, "198.18.0.1:1194/udp", "tun0", None)


def test_status_line_shape():
    c = ClientCounters(bytes_in=1234, bytes_out=567, renegotiations=2, up_since=100.0)
    assert format_line(UP, c, 3, 100.0 + 3725) == ("status: tunnel up, remote 198.18.0.1:1194/udp, tun0 up 1:02:05, "
                                                   "bytes in 1234 out 567, renegotiations 2, LAN leases 3")
    assert format_line(TunnelState(False), ClientCounters(), None, 0) == (
        "status: tunnel down, bytes in 0 out 0, renegotiations 0")
    # route-delay: up (addresses, DNS), the routes still to come (gateway/observers.py routes_wait)
    waiting = TunnelState(False, "198.18.0.1:1194/udp", "tun0", None, routes_wait=True)
    assert format_line(waiting, ClientCounters(up_since=100.0), None, 105.0).startswith(
        "status: tunnel up, routes waiting (route-delay), remote 198.18.0.1:1194/udp, tun0 up 0:00:05, ")


def test_status_line_on_change_and_every_interval(caplog):
    clock = Clock()
    pump = Pump(clock, NoWait())
    c = ClientCounters()
    leases = iter(range(100))
    sl = StatusLine(10, lambda: next(leases), wall=lambda: clock.t)
    caplog.set_level(logging.INFO, "vpn-appliance")
    sl.attach(pump, lambda: c)
    sl.tunnel_changed(UP)
    c.bytes_in, c.renegotiations = 500, 1
    advance(pump, clock, 25)
    sl.tunnel_changed(TunnelState(False))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status:")]
    assert len(lines) == 4, lines            # up, +10 s, +20 s, down
    assert lines[0].startswith("status: tunnel up") and lines[0].endswith("LAN leases 0")
    assert "bytes in 500 out 0, renegotiations 1, LAN leases 2" in lines[2]
    assert lines[3].startswith("status: tunnel down")


def test_status_interval_zero_is_only_on_change(caplog):
    clock = Clock()
    pump = Pump(clock, NoWait())
    sl = StatusLine(0, None)
    caplog.set_level(logging.INFO, "vpn-appliance")
    sl.attach(pump, ClientCounters)
    advance(pump, clock, 100, step=10)
    sl.tunnel_changed(UP)
    advance(pump, clock, 100, step=10)
    assert sum(r.getMessage().startswith("status:") for r in caplog.records) == 1


def test_a_broken_lease_count_does_not_stop_the_line(caplog):
    sl = StatusLine(0, lambda: 1 // 0)
    caplog.set_level(logging.INFO, "vpn-appliance")
    sl.attach(Pump(Clock(), NoWait()), ClientCounters)
    sl.tunnel_changed(UP)
    assert any(r.getMessage().startswith("status: tunnel up") for r in caplog.records)


def test_client_status_file_at_start_every_n_seconds_and_at_exit(tmp_path):
    clock = Clock()
    pump = Pump(clock, NoWait())
    c = ClientCounters()
    f = tmp_path / "status"
    sf = ClientStatusFile(str(f), 5, wall=lambda: clock.t)
    sf.attach(pump, lambda: c)
    first = parse_statistics(f.read_text())
    assert {k: v for k, v in first.items() if k != "Updated"} == {
        "TUN/TAP read bytes": "0", "TUN/TAP write bytes": "0", "TCP/UDP read bytes": "0",
        "TCP/UDP write bytes": "0", "Auth read bytes": "0"}
    c.bytes_in, c.bytes_out, c.wire_in, c.wire_out = 100, 200, 300, 400
    advance(pump, clock, 4)
    assert parse_statistics(f.read_text())["TUN/TAP write bytes"] == "0"     # not yet N seconds
    advance(pump, clock, 2)
    got = parse_statistics(f.read_text())
    assert (got["TUN/TAP read bytes"], got["TUN/TAP write bytes"], got["TCP/UDP read bytes"],
            got["TCP/UDP write bytes"], got["Auth read bytes"]) == ("200", "100", "300", "400", "100")
    c.bytes_in = 999
    sf.close()
    assert parse_statistics(f.read_text())["TUN/TAP write bytes"] == "999"
    assert list(tmp_path.iterdir()) == [f]


def test_unwritable_status_file_is_logged_once(tmp_path, caplog):
    sf = ClientStatusFile(str(tmp_path / "no" / "status"), 1, wall=lambda: 0.0)
    clock = Clock()
    pump = Pump(clock, NoWait())
    sf.attach(pump, ClientCounters)
    advance(pump, clock, 5)
    sf.close()
    assert sum("status file" in r.getMessage() for r in caplog.records) == 1


def test_render_is_the_block_openvpn_writes():
    lines = render_client(ClientCounters(1, 2, 3, 4), 0.0)
    assert [ln.split(",")[0] for ln in lines] == [
        "OpenVPN STATISTICS", "Updated", "TUN/TAP read bytes", "TUN/TAP write bytes", "TCP/UDP read bytes",
        "TCP/UDP write bytes", "Auth read bytes", "END"]


def test_the_toml_run_gets_the_status_line_and_the_profiles_status_file(tmp_path):
    from types import SimpleNamespace

    from appliance.config.schema import parse_appliance_config
    from appliance.lan import lan_observers
    from appliance.lan.status_line import status_observers
    cfg = parse_appliance_config(
        '[appliance]\nstatus_interval = 30\n[wan]\nname = "eth0"\ndhcp = true\n[vpn]\nrole = "client"\n'
        f"inline = '''\nclient\ndev tun\nremote 198.18.0.1 1194\n<ca>\nX\n</ca>\nstatus {tmp_path}/st 7\n'''\n",
        str(tmp_path / "appliance.toml"))
    dhcp = SimpleNamespace(lease_count=lambda: 4)
    got = status_observers(cfg, [dhcp])
    assert [type(o) for o in got] == [StatusLine, ClientStatusFile]
    assert got[0].interval == 30 and got[0].lease_count() == 4 and got[1].interval == 7
    assert any(isinstance(o, StatusLine) for o in lan_observers(cfg, "eth0", None))
