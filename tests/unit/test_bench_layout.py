"""lab/bench_tunnel.py's placement tools: `--cpu-map` must add up what each process used over a run
(iperf3's two ends only once they were reaped) and the idle share from /proc/stat's counters, and
`--layout` must refuse a machine it cannot split rather than pin everything to one CPU."""
import pytest

from lab import bench_tunnel


def test_cpu_map_shares_of_a_cpu_and_idle():
    before = ({1: ("openvpn", 10.0), 2: ("vpn-appliance", 4.0), 3: ("gone", 1.0)}, (100.0, 400.0), 7.0)
    after = ({1: ("openvpn", 14.0), 2: ("vpn-appliance", 6.5), 4: ("kworker/0:1", 0.2)}, (101.0, 410.0), 8.0)
    line = bench_tunnel._cpu_map(before, after, 5.0)
    # 4 s of openvpn in 5 s is 80% of one CPU; our 2.5 s 50%; the reaped iperf3 ends 1 s, 20%; a
    # process born during the run counts from zero; 1 of 10 CPU seconds idle is 10%.
    assert "machine idle 10%" in line
    assert "openvpn 80%" in line and "vpn-appliance 50%" in line and "iperf3 20%" in line
    assert "kworker 4%" in line
    assert line.index("openvpn") < line.index("vpn-appliance") < line.index("iperf3")


def test_cpu_map_leaves_out_processes_that_used_nothing():
    snap = ({1: ("idle-thing", 3.0)}, (5.0, 10.0), 0.0)
    line = bench_tunnel._cpu_map(snap, ({1: ("idle-thing", 3.0)}, (6.0, 12.0), 0.0), 1.0)
    assert "idle-thing" not in line and "machine idle 50%" in line


def test_layout_needs_two_cpus(monkeypatch, capsys):
    monkeypatch.setattr(bench_tunnel.os, "sched_getaffinity", lambda _pid: {0})
    pinned = []
    monkeypatch.setattr(bench_tunnel.os, "sched_setaffinity", lambda pid, cpus: pinned.append((pid, cpus)))
    with pytest.raises(SystemExit) as e:
        bench_tunnel.main(["--layout", "server-alone"])
    assert e.value.code == 2 and "needs at least two CPUs" in capsys.readouterr().err
    assert pinned == []

