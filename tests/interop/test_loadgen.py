"""The load generator (lab/loadgen.py) against ours and Debian's OpenVPN server: 20 sessions from
one process, spread over several source addresses, each completes the handshake, gets its pushed
address and has a ping through its tunnel answered; the server sees all of them. One lab for the
module (lab/capacity.py's Bench: the same configs `make capacity` measures)."""
from __future__ import annotations

import re

import pytest

from lab.capacity import Bench

N = 20


@pytest.fixture(scope="module")
def bench():
    b = Bench(sources=4)
    yield b
    b.close()


def _server_saw(kind: str, log: str) -> tuple[int, set[str]]:
    """(clients the server logged as connected, their source addresses)."""
    if kind == "ours":
        lines = re.findall(r".*: connected, address .*", log)
    else:
        lines = re.findall(r".*Peer Connection Initiated with.*", log)
    return len(lines), set(re.findall(r"198\.18\.0\.(\d+)", "\n".join(lines)))


@pytest.mark.parametrize("kind", ["ours", "openvpn"])
def test_twenty_sessions_connect_and_pass_traffic(bench, kind):
    srv = bench.server(kind, "tls-crypt")
    seen: dict = {}
    try:
        r = bench.loadgen("tls-crypt", N, 8, hold=True, duration=60,
                          on_ready=lambda ready: seen.update(alive=srv.alive(), log=srv.log()))
    finally:
        bench.stop(srv)
    ready = r.get("ready", {})
    assert ready.get("connected") == N and ready.get("traffic_ok") == N, r
    assert ready.get("failures") == {}, r
    assert r.get("held") == N, r                        # nobody dropped while held
    assert ready["connect_p50_ms"] is not None and ready["handshakes_per_s"] > 0, r
    assert seen.get("alive"), "server died under the load"
    n, sources = _server_saw(kind, seen["log"])
    assert n >= N, seen["log"][-3000:]
    assert len(sources) == 4, sources                  # round-robin over the 4 source addresses
