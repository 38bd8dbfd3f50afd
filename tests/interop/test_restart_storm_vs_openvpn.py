"""A RESTART storm from Debian's OpenVPN 2.6 server at our client (atk44), in namespaces.

Debian's server tells our client RESTART (`client-kill CID`, the message a reload's restart and
2.6's SIGHUP send too) each time its tunnel is up. Our client must come back each time after
connect-retry's pause (1 s: a tunnel was up, so no backoff, as 2.6's client), keep running, grow
no memory per round, and once stopped leave the host's addresses and routes as they were before
it started -- however many times it set them up and took them down.
"""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab
from tests.interop.test_ops_vs_openvpn import Mgmt
from tests.interop.test_restart_vs_openvpn import _client_kill


ROUNDS = 4
PUSHED_NET = "198.18.77.0"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def _host_state(lab) -> str:
    """What a client run changes on its host: addresses, links, routes (IPv4 and IPv6)."""
    out = lab.cli.run("ip -o addr show; ip -o link show | cut -d: -f2; ip route show table all; "
                      "ip -6 route show table all").stdout
    # (the veth's own IPv6 link-local address and its routes come by themselves when it is up,
    # some time after the lab made it: not the client's doing)
    return "\n".join(sorted(line for line in out.splitlines()
                            if line.strip() and not ("fe80" in line and "tun" not in line)
                            and not ("ff00::/8" in line and "tun" not in line)))


def _newest_client_id(sock: str) -> int:
    """The newest client's CID in OpenVPN's `status 2` (the told one may still be listed until
    its own end: 2.6 ends it after its acknowledgement or 5 s)."""
    m = Mgmt(sock)
    try:
        for _ in range(20):
            ids = [int(p[10]) for p in (x.split(",") for x in m.cmd("status 2"))
                   if p[0] == "CLIENT_LIST" and len(p) > 10]
            if ids:
                return max(ids)
        raise AssertionError("no client in OpenVPN's status")
    finally:
        m.close()


def _rss_kib(proc) -> int:
    with open(f"/proc/{proc.p.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_our_client_under_a_restart_storm_keeps_its_pause_and_leaves_the_host_as_it_was(lab, procs):
    sock = str(lab.tmp / "mgmt-storm.sock")
    srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp", extra=(
        f"management {sock} unix\npush \"route {PUSHED_NET} 255.255.255.0\"\npush \"redirect-gateway def1\"\n")),
        "ovpn-storm")
    procs.append(srv)
    # A default route for redirect-gateway to find (net_gateway): the client adds the server's
    # host route through it, on the lab's veth, which outlives the client's TUN if not undone.
    lab.cli.run(f"ip route replace default via {SRV_IP}")
    before = _host_state(lab)
    cli = lab.ours(lab.cli, client_profile(lab.pki, "udp", remotes=[(SRV_IP, 1194, "udp")],
                                           extra="connect-retry 1\n"), "ours-storm", wait=40)
    procs.append(cli)
    routes = lab.cli.run("ip route").stdout
    assert PUSHED_NET in routes and f"{SRV_IP} dev " in routes, routes
    rss = []
    for n in range(ROUNDS):
        _client_kill(sock, _newest_client_id(sock), "RESTART")
        assert cli.wait_count("tunnel up", n + 2, timeout=30), cli.log()[-3000:]
        if n in (0, ROUNDS - 1):
            rss.append(_rss_kib(cli))
    log = cli.log()
    assert cli.alive(), log[-3000:]
    assert log.count("server sent RESTART: this server again") == ROUNDS, log[-3000:]
    pauses = re.findall(r"restarting in (\d+) s", log)
    assert pauses == ["1"] * ROUNDS, pauses                 # connect-retry's 1 s each time, no backoff
    assert srv.log().count("Peer Connection Initiated") == ROUNDS + 1
    assert lab.wait_ping(lab.cli, "198.19.0.1", within=20), "no tunnel after the storm"
    print(f"RESTART storm: {ROUNDS} rounds, our client's VmRSS {rss[0]} -> {rss[1]} KiB")
    assert rss[1] - rss[0] < 4096, rss                       # a few MiB of noise at most, no growth per round
    assert cli.stop(10) is not None
    procs.remove(cli)
    after = _host_state(lab)
    lab.cli.run("ip route del default", check=False)
    assert after == before, (before, after)
