"""lab/path_cpu.py: the CPU-sum bound of an iperf3 path on a small machine (issue 11, upl39). The
arithmetic the README's figures rest on: a pair's rate is at most cpus / (the path's CPU per MB),
and at most one CPU / (the single-threaded server's CPU per MB); the client cost a target needs is
the budget left once the rest of the path is paid."""
import math

import pytest

from lab import bench_tunnel, path_cpu

# Round numbers close to a measured upload (us per MB): OpenVPN's client and ours against
# OpenVPN's server.
REF = {"VPN server": 6000.0, "VPN client": 7500.0, "iperf3 -s": 1700.0, "iperf3 -c": 200.0, "ksoftirqd": 100.0}
OURS = {**REF, "VPN client": 4500.0}


def test_seconds_become_microseconds_per_megabyte():
    assert path_cpu.per_mb({"VPN client": 0.5, "idle": 2.0}, 100.0) == {"VPN client": 5000.0, "idle": 20000.0}
    assert all(math.isnan(v) for v in path_cpu.per_mb({"VPN client": 0.5}, 0.0).values())


def test_the_path_total_sums_the_processes_but_not_the_softirq_inside_them():
    costs = {**REF, "softirq (inside the above)": 1500.0, "other processes": 20000.0, "idle": 10.0}
    assert path_cpu.path_total(costs) == 15500.0


def test_two_cpus_carry_a_path_of_15500_us_per_mb_at_1032_mbit():
    # 2 CPU seconds a second / 15,500 us per MB = 129.0 MB/s = 1032 Mbit/s
    assert path_cpu.ceiling_mbit(15500.0) == pytest.approx(1032.26, abs=0.01)
    assert path_cpu.ceiling_mbit(15500.0, cpus=4) == pytest.approx(2 * 1032.26, abs=0.02)
    # at that rate the path keeps both CPUs busy; at a fifth of it (a loaded machine) 0.4 of them
    assert path_cpu.cpus_used(REF, 1032.26) == pytest.approx(2.0, abs=1e-4)
    assert path_cpu.cpus_used(REF, 206.45) == pytest.approx(0.4, abs=1e-4)


def test_the_client_cost_for_a_target_is_what_the_rest_leaves_of_the_budget():
    b = path_cpu.client_bound(OURS, ref_mbit=1000.0, target=1.5)
    # 1.5 x 1000 Mbit/s = 187.5 MB/s; 2 CPUs give 2e6 / 187.5 = 10,667 us per MB to the whole path;
    # the rest of ours costs 8,000, so the client may cost 2,667.
    assert b.goal_mbit == 1500.0 and b.rest_us == 8000.0
    assert b.budget_us == pytest.approx(10666.67, abs=0.01)
    assert b.client_needed_us == pytest.approx(2666.67, abs=0.01)
    assert b.zero_client_mbit == pytest.approx(2000.0)              # 2e6 / 8000 us = 250 MB/s
    # ...but the server alone costs 6,000 us per MB: one CPU carries 166.7 MB/s = 1333 Mbit/s
    assert b.server_alone_mbit == pytest.approx(1333.33, abs=0.01)
    assert not b.possible


def test_a_target_the_server_core_and_the_sum_allow_is_possible():
    cheap_server = {**OURS, "VPN server": 3000.0}
    b = path_cpu.client_bound(cheap_server, ref_mbit=1000.0, target=1.5)
    assert b.client_needed_us == pytest.approx(10666.67 - 5000.0, abs=0.01) and b.possible
    # a rest above the budget leaves a negative client cost: no client reaches the target
    b = path_cpu.client_bound({**OURS, "iperf3 -s": 9000.0}, ref_mbit=1000.0, target=1.5)
    assert b.client_needed_us < 0 and not b.possible and b.zero_client_mbit < 1500.0


def test_the_table_prints_both_pairs_and_the_verdict():
    text = path_cpu.table({**REF, "softirq (inside the above)": 1500.0}, OURS, 1000.0, 1200.0)
    assert "path total" in text and "15500" in text and "12500" in text
    assert "softirq (inside the above)" in text
    assert "CPUs the path used" in text and "1.94" in text and "1.88" in text   # 15500 x 125 MB/s; 12500 x 150
    assert text.count("NOT possible") == 2                      # as measured and at its ceiling


def test_the_run_is_split_by_role_from_the_snapshots():
    before = ({1: ("openvpn", 10.0), 7: ("ksoftirqd/0", 1.0), 9: ("make", 3.0)}, (100.0, 400.0), 0.0)
    after = ({1: ("openvpn", 14.0), 7: ("ksoftirqd/0", 1.5), 8: ("ksoftirqd/1", 0.25), 9: ("make", 5.0)},
             (101.0, 420.0), 0.0)
    s = bench_tunnel._path_seconds(before, after, server=4.0, client=3.0, iperf_c=0.5, iperf_s=2.0, softirq=1.25)
    assert s["ksoftirqd"] == 0.75 and s["VPN server"] == 4.0 and s["iperf3 -s"] == 2.0
    # 20 CPU seconds passed, 1 idle: 19 busy, of which the path 10.25; the rest is other processes
    assert s["idle"] == 1.0 and s["other processes"] == pytest.approx(8.75)
    assert s["softirq (inside the above)"] == 1.25


def test_median_costs_per_role():
    runs = [{"VPN client": 1.0, "idle": 5.0}, {"VPN client": 3.0, "idle": 1.0}, {"VPN client": 2.0, "idle": 9.0}]
    assert bench_tunnel._median_costs(runs) == {"VPN client": 2.0, "idle": 5.0}
    assert bench_tunnel._median_costs([]) == {}
