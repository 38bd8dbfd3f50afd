"""Short version of the network-fault run (issue 8, "Measured and shown"; the long one is
`make reliability`, lab/reliability/faults.py): 10% loss (nftables) + 25% reordering and 0-50 ms
jitter (a seeded UDP relay) on UDP, 10% loss on TCP: an iperf3 stream and a checked file get
through, ours ⇄ ours.
Every run makes its own namespaces (198.18.0.0/15) and removes them with its processes. The five
test_reliability_*.py files were one (~400 s on one pytest-xdist worker, which runs whole files);
split, both workers take them, longest first (tests/conftest.py, LONG_FILES)."""
from __future__ import annotations

import pytest

from lab.netns import Lab
from lab.reliability import faults


@pytest.mark.parametrize("proto,scenario", [("udp", "all"), ("tcp", "loss")])
def test_tunnel_over_a_faulty_link(tmp_path, proto, scenario):
    with Lab(tmp=tmp_path) as lab:
        r = faults.measure_pair(lab, "ours", "ours", proto, scenario, seconds=4, file_bytes=1_000_000)
    assert r["alive"], r
    assert r["dropped"] > 0, f"the loss rules dropped nothing: {r}"
    assert r["file_ok"], f"the file did not arrive intact: {r}"
    assert r["iperf_mbps"] > 0, f"no iperf3 stream: {r}"
