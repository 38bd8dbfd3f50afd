"""lab/bench_tunnel.py's placement tools: `--cpu-map` must add up what each process used over a run
(iperf3's two ends only once they were reaped) and the idle share from /proc/stat's counters, and
`--layout` must refuse a machine it cannot split rather than pin everything to one CPU."""
import sys

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



# `--ours-gso N` (pace37): our program started with its GSO runs bounded, and `--queue`'s reading of
# the receiving socket's queue from /proc/net/udp.
UDP_LISTING = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
  133: 010012C6:04AA 00000000:0000 07 00000000:00033A00 00:00000000 00000000     0        0 2 2 0000000000000000 157
"""


def test_the_queue_of_the_vpn_port_is_read_from_the_listing():
    assert bench_tunnel.parse_udp_queue(UDP_LISTING, 1194) == 0x33A00      # 211456 bytes queued
    assert bench_tunnel.parse_udp_queue(UDP_LISTING, 53) == 0
    assert bench_tunnel.parse_udp_queue(UDP_LISTING, 1195) is None
    assert bench_tunnel.parse_udp_queue("header only\n", 1194) is None
    client = UDP_LISTING.splitlines()[0] + "\n   7: 020012C6:C350 010012C6:04AA 01 00000000:00000900 00 0 0 0 0 3 2 0 0\n"
    assert bench_tunnel.parse_udp_queue(client, 1194) == 0x900               # a client's socket, by its peer


SS_LISTING = """\
State  Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
UNCONN 0      0         127.0.0.1:53        0.0.0.0:*
\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)
UNCONN 211456 0        198.18.0.1:1194      0.0.0.0:*
\t skmem:(r211456,rb212992,t0,tb212992,f0,w0,o0,bl0,d157)
ESTAB  0      0        198.18.0.2:50000  198.18.0.1:1194
\t skmem:(r0,rb8388608,t0,tb8388608,f4096,w0,o0,bl0,d0)
"""


def test_the_receive_buffer_limit_is_read_from_ss():
    assert bench_tunnel.parse_rcvbuf(SS_LISTING, 1194) == 212992              # the first socket on the port
    assert bench_tunnel.parse_rcvbuf(SS_LISTING.split("UNCONN 211456")[0] + "ESTAB" + SS_LISTING.split("ESTAB", 1)[1],
                                     1194) == 8388608                         # a client's, by its peer
    assert bench_tunnel.parse_rcvbuf(SS_LISTING, 1195) is None


def test_a_bounded_run_of_ours_is_still_ours_and_starts_with_that_bound(monkeypatch):
    from pathlib import Path

    from lab.netns import OUR_BIN
    argv = bench_tunnel.ours_argv(Path("/tmp/x.ovpn"), 8)
    assert OUR_BIN in argv and argv[-2:] == ["run", "/tmp/x.ovpn"]    # Proc.is_ours, Lab's stop rules
    assert bench_tunnel.ours_argv(Path("/tmp/x.ovpn"), None) == [OUR_BIN, "run", "/tmp/x.ovpn"]
    # What the interpreter runs: the bound set before the program's main, which gets its own argv.
    import appliance.cli
    import appliance.transport.udp as udp
    seen = []
    monkeypatch.setattr(appliance.cli, "main", lambda: seen.append((udp.MAX_GSO_SEGMENTS, list(sys.argv))) or 0)
    monkeypatch.setattr(udp, "MAX_GSO_SEGMENTS", udp.MAX_GSO_SEGMENTS)     # restored after the test
    monkeypatch.setattr(sys, "argv", ["-c", *argv[3:]])
    with pytest.raises(SystemExit) as e:
        exec(argv[2], {})
    assert e.value.code == 0 and seen == [(8, [OUR_BIN, "run", "/tmp/x.ovpn"])]


def test_ours_gso_takes_only_what_one_send_can_carry(capsys):
    with pytest.raises(SystemExit) as e:
        bench_tunnel.main(["--ours-gso", "64,0"])
    assert e.value.code == 2 and "each value 1..64" in capsys.readouterr().err


def test_a_baseline_tree_is_imported_by_ours_only_inside_its_runs(tmp_path, monkeypatch, capsys):
    """--baseline: our processes started inside _tree(DIR) get PYTHONPATH=DIR (before the editable
    install), and the environment is as it was afterwards; a DIR without appliance/ is refused."""
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    with bench_tunnel._tree(tmp_path):
        assert bench_tunnel.os.environ["PYTHONPATH"] == str(tmp_path)
    assert bench_tunnel.os.environ["PYTHONPATH"] == "/elsewhere"
    monkeypatch.delenv("PYTHONPATH")
    with bench_tunnel._tree(None):
        assert "PYTHONPATH" not in bench_tunnel.os.environ
    with bench_tunnel._tree(tmp_path):
        pass
    assert "PYTHONPATH" not in bench_tunnel.os.environ
    with pytest.raises(SystemExit) as e:
        bench_tunnel.main(["--baseline", str(tmp_path)])
    assert e.value.code == 2 and "no appliance/ there" in capsys.readouterr().err
