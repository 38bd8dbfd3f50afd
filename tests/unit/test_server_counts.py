"""lab/server_counts.py (thru50): the per-MB counts `lab.bench_tunnel --server-counts` prints must be
read from perf's and nstat's real output formats, leave out what perf could not count, and diff
counters over a run -- a misread line would make one client look cheaper for the server."""
from lab import server_counts

PERF = """\
237,,context-switches,10012345678,100.00,,
7210,,syscalls:sys_enter_recvfrom,10012345678,100.00,,
<not counted>,,syscalls:sys_enter_recvmmsg,0,0.00,,
<not supported>,,syscalls:sys_enter_select,0,100.00,,
18711,,syscalls:sys_enter_poll,10012345678,100.00,,
"""

NSTAT = """\
#kernel
UdpInDatagrams                  72100              0.0
UdpRcvbufErrors                 6000               0.0
TcpOutSegs                      21470              0.0
"""


def test_perf_csv_counts_by_event_without_the_tracepoint_prefix():
    assert server_counts.parse_perf_csv(PERF) == {"context-switches": 237, "recvfrom": 7210, "poll": 18711}


def test_perf_csv_ignores_uncounted_and_foreign_lines():
    assert server_counts.parse_perf_csv("Performance counter stats\n\n  # started\n" + PERF.splitlines()[2]) == {}


def test_nstat_values_and_their_difference_over_a_run():
    before = server_counts.parse_nstat(NSTAT)
    assert before == {"UdpInDatagrams": 72100, "UdpRcvbufErrors": 6000, "TcpOutSegs": 21470}
    after = {**before, "UdpInDatagrams": 144200, "UdpRcvbufErrors": 6000}
    assert server_counts.diff(before, after) == {"UdpInDatagrams": 72100, "UdpRcvbufErrors": 0, "TcpOutSegs": 0}


def test_per_mb_line_leaves_out_zeros_and_says_when_nothing_arrived():
    line = server_counts.per_mb_line("x", {"recvfrom": 7210, "poll": 0, "write": 7215}, 10.0)
    assert line == "    (x per MB: recvfrom 721.0, write 721.5)"
    assert "nothing received" in server_counts.per_mb_line("x", {"recvfrom": 1}, 0.0)


def test_every_counted_syscall_is_a_tracepoint_event():
    assert all(e == "context-switches" or e.startswith("syscalls:sys_enter_") for e in server_counts.EVENTS)
    assert "syscalls:sys_enter_recvfrom" in server_counts.EVENTS


def test_a_runs_counts_under_one_set_of_keys_per_mb():
    got = server_counts.merged_per_mb({"recvfrom": 7210}, {"TcpOutSegs": 2000}, {"TcpRetransSegs": 100}, 10.0)
    assert got == {"recvfrom": 721.0, "server ns TcpOutSegs": 200.0, "client ns TcpRetransSegs": 10.0}
    assert server_counts.merged_per_mb({"recvfrom": 1}, {}, {}, 0.0) == {}


def test_medians_table_puts_each_count_beside_the_references():
    ref = [{"recvfrom": 720.0, "sendto": 200.0}, {"recvfrom": 722.0, "sendto": 300.0}, {"recvfrom": 721.0, "sendto": 250.0}]
    ours = [{"recvfrom": 721.0, "sendto": 60.0, "poll": 0.0}]
    lines = server_counts.medians_table(ref, ours).splitlines()
    assert lines[1].split() == ["recvfrom", "721.0", "721.0"]
    assert lines[2].split() == ["sendto", "250.0", "60.0"]
    assert not any(line.split()[0] == "poll" for line in lines)     # zero in every run: left out
    assert server_counts.medians_table([{"x": 1.0}], [{}]).splitlines()[1].split() == ["x", "1.0", "-"]


def test_the_client_tun_is_found_by_its_point_to_point_flag():
    # --client-tun-gso sets gso_max_size on the client namespace's one tun device, whatever it is named
    from types import SimpleNamespace

    from lab import bench_tunnel
    listing = ("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\n"
               "2: vb08c836@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n"
               "4: tun0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast\n")
    ns = SimpleNamespace(name="x", run=lambda cmd, check=True: SimpleNamespace(stdout=listing))
    assert bench_tunnel._tun_name(ns) == "tun0"
    bare = SimpleNamespace(name="x", run=lambda cmd, check=True: SimpleNamespace(stdout=listing.split("4:")[0]))
    try:
        bench_tunnel._tun_name(bare)
    except RuntimeError as e:
        assert "no tun device" in str(e)
    else:
        raise AssertionError("a namespace without a tun device must be refused")
