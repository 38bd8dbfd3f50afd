"""Short versions of the recovery runs (issue 8; the long ones are `make reliability`,
lab/reliability/recovery.py): after kill -9 of the server every client is back within
ping-restart + backoff; a client restarted mid-transfer keeps its address and its TCP stream
(against our server and Debian's OpenVPN).
Every run makes its own namespaces (198.18.0.0/15) and removes them with its processes. The five
test_reliability_*.py files were one (~400 s on one pytest-xdist worker, which runs whole files);
split, both workers take them, longest first (tests/conftest.py, LONG_FILES)."""
from __future__ import annotations

from lab.reliability import recovery
from lab.reliability.fleet import Fleet

# How long the receiver waits for the next byte. The sender's TCP backs off while the client is
# down (retransmissions at ~12.6 s, ~25.4 s, ~51 s after the stop): under the CI's load the tunnel
# once took 16.5 s to come back, the next retransmission came after a 25 s limit, and the stream
# was counted lost though it resumed. The limit is not the measure here: the stream's bytes are.
STALL_S = 60


def test_clients_come_back_after_kill_9_of_the_server():
    # keepalive 2 10 (the long run's 5 30): a client notices the server's death at its pushed
    # ping-restart, which was most of this test's time; the bound follows it (10 + backoff + 15 s).
    with Fleet(5) as fleet:
        r = recovery.kill9(fleet, 5, "ours", keepalive=(2, 10))
    assert r["server_alive"], r
    assert r["back"] == 5 and r["within_bound"] == 5, r
    assert r["ping_ok"] == 5, r


def test_client_restarted_mid_transfer_keeps_address_and_stream():
    with Fleet(1) as fleet:
        r = recovery.restart_mid_transfer(fleet, "ours", nbytes=8_000_000, rate_mbit=16, restart_at=1.5,
                                          stall_s=STALL_S)
    assert r["fresh_transfer_mbps"] > 0, r
    assert r["same_address"], r
    assert r["stream_survived"], r


def test_client_restarted_mid_transfer_against_openvpn_server_survives():
    """The same against Debian's OpenVPN server: the behaviour ours now matches."""
    with Fleet(1) as fleet:
        r = recovery.restart_mid_transfer(fleet, "openvpn", nbytes=8_000_000, rate_mbit=16, restart_at=1.5,
                                          stall_s=STALL_S)
    assert r["same_address"] and r["stream_survived"] and r["fresh_transfer_mbps"] > 0, r
