"""Short version of the flood run (issue 8; the long one is `make reliability`,
lab/reliability/flood.py): spoofed resets, bogus TLS handshakes and wrong-password logins while
clients pass paced traffic: every client stays connected and keeps most of its throughput.
Every run makes its own namespaces (198.18.0.0/15) and removes them with its processes. The five
test_reliability_*.py files were one (~400 s on one pytest-xdist worker, which runs whole files);
split, both workers take them, longest first (tests/conftest.py, LONG_FILES)."""
from __future__ import annotations

from lab.reliability import flood


def test_clients_stay_connected_through_floods():
    # The rates before the floods (which streams run: 2 s of a 1 Mbit/s stream is ~250 KB) and
    # after them (not asserted) over seconds, not the long run's 15 and 8 (they were 5 and 3 s);
    # the 1 Mbit/s streams settle in 3 s, not the long run's 8 (paced that low, TCP's slow start
    # is over within a few round trips).
    r = flood.run(nclients=5, resets=5000, handshakes=50, bad_rate=5, flood_s=10, rate_mbit=1.0, before_s=2,
                  after_s=1, settle_s=3)
    assert r["server_alive"], r
    assert r["connected_before"] == 5, r
    assert r["legit_disconnects_during"] == 0 and r["client_restarts"] == 0, r
    assert r["clients_alive"] == 5, r
    assert r["streams_during"] == 5 and r["mbps_during_min"] >= 0.5, r
    assert r["bad_logins_refused"] > 0 and r["server_badlogin_sessions_ended"] > 0, r
    assert r["rss_10s_later_mb"] - r["rss_before_mb"] < 20, r
    assert r["fds_after"] <= r["fds_before"], r
