"""Our client under link storms with a hostile push, against Debian's OpenVPN 2.6 server (atk40).

The server (routed, at 198.18.50.1 behind the client's gateway 198.18.0.1, as in
test_wan_flap_routes.py) pushes redirect-gateway def1, ~1,000 host routes and routes that collide
with the client's own world: the server's own address, the WAN's network, the WAN's gateway and
0.0.0.0/0. Then the client's WAN link flaps ~40 times a second for a few seconds with addresses
added and deleted meanwhile, while a ping to the server's own address runs (its packets follow
0/1 into the TUN whenever the host route is gone), and then every route of the tunnel is flushed
at once (~1,000 route removals: often more notifications than the watch socket's queue holds, ENOBUFS).

What a user checks afterwards: the tunnel still pings on the same connection (no reconnect), the
server is reached outside the tunnel and every pushed route is back; the client took a bounded
share of a core and wrote a few lines, not one per flap. Before: every packet to the server's
address while its route was gone looped through the TUN (sealed, routed into the TUN again,
fragmented past the MTU, each fragment round again: 20,000 packets from one ping), as OpenVPN
2.6's drop_if_recursive_routing prevents; and a check of ~1,000 routes ran every second of a flap
storm, each one line in the log.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

SERVER, ROUTER = "198.18.50.1", "198.18.0.1"
PUSHED = 1000                                   # host routes 198.19.100.0 .. 198.19.103.249
HOSTILE = (f"{SERVER} 255.255.255.255", "198.18.0.0 255.255.255.0", f"{ROUTER} 255.255.255.255",
           "0.0.0.0 0.0.0.0")
BACK_WITHIN = 15.0                              # s: the state right again after a storm (measured ~1-2 s)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    pushes = "".join(f'push "route 198.19.{100 + i // 250}.{i % 250} 255.255.255.255"\n' for i in range(PUSHED))
    pushes += "".join(f'push "route {r}"\n' for r in HOSTILE)
    with Lab(tmp=tmp_path_factory.mktemp("storms")) as lab:
        lab.srv.run(f"ip addr add {SERVER}/32 dev lo")
        lab.cli.run(f"ip route add default via {ROUTER}")
        server = lab.openvpn(lab.srv, server_config(
            lab.pki, "udp", extra=f'local {SERVER}\npush "redirect-gateway def1"\n' + pushes), "server")
        client = lab.ours(lab.cli, client_profile(lab.pki, "udp", remotes=[(SERVER, 1194, "udp")]), "ours")
        try:
            assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=30), client.log()[-3000:]
            lab.client = client
            yield lab
        finally:
            client.stop_promptly(8)
            server.stop_promptly(8)


def _cpu(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tun_packets(lab: Lab) -> int:
    return int(lab.cli.run("cat /sys/class/net/tun0/statistics/tx_packets").stdout)


def _pushed_in_kernel(lab: Lab) -> int:
    return int(lab.cli.run("ip -4 route show dev tun0 | grep -c '^198\\.19\\.10[0-3]\\.'", check=False).stdout)


def _state_right(lab: Lab) -> str:
    """'' when the client's routes are as before the storm, else what is wrong."""
    got = lab.cli.run(f"ip -4 route get {SERVER}").stdout
    if f"via {ROUTER} dev vb{lab.tag}" not in got:
        return f"the server is reached {got.strip()!r}"
    for half in ("0.0.0.0/1", "128.0.0.0/1"):
        if "tun0" not in lab.cli.run(f"ip -4 route show {half}").stdout:
            return f"{half} is not via the tunnel"
    n = _pushed_in_kernel(lab)
    return "" if n == PUSHED else f"{n} of the {PUSHED} pushed routes in the kernel"


def _wait_right(lab: Lab) -> str:
    end, why = time.monotonic() + BACK_WITHIN, "not checked"
    while time.monotonic() < end:
        why = _state_right(lab)
        if not why:
            return ""
        time.sleep(0.2)
    return why


def test_a_link_and_address_storm_costs_little_and_leaves_the_routes_right(lab):
    client, dev = lab.client, f"vb{lab.tag}"
    assert not _state_right(lab), _state_right(lab) + lab.cli.run("ip -4 route | head -20").stdout
    pid, lines_before = client.p.pid, len(client.log().splitlines())
    cpu0, tun0, t0 = _cpu(pid), _tun_packets(lab), time.monotonic()
    # ~40 flaps a second for ~4 s, an address added and deleted at each, a 1,400-byte ping to the
    # server's own address every 0.1 s throughout (into the TUN whenever the host route is gone)
    lab.cli.run(f"(ping -q -c 40 -i 0.1 -s 1400 {SERVER} >/dev/null 2>&1 &) ; "
                f"for i in $(seq 150); do ip link set {dev} down; ip link set {dev} up; "
                f"ip addr add 198.18.0.$((100 + i % 100))/32 dev {dev}; "
                f"ip addr del 198.18.0.$((100 + i % 100))/32 dev {dev}; sleep 0.02; done; "
                f"ip route replace default via {ROUTER}", timeout=60)
    why = _wait_right(lab)
    wall, cpu, looped = time.monotonic() - t0, _cpu(pid) - cpu0, _tun_packets(lab) - tun0
    log = "\n".join(client.log().splitlines()[lines_before:])
    print(f"storm + recovery: {wall:.1f} s wall, client CPU {cpu:.2f} s, {looped} packets into the TUN, "
          f"{len(log.splitlines())} log lines")
    assert not why, why + "\n" + log[-3000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15), log[-3000:]
    assert client.log().count("tunnel up") == 1, log[-3000:]               # the same connection
    # Before: the ping's packets looped through the TUN (20,000 packets from one); now each is
    # dropped once (40 pings and the keepalives at most).
    assert looped < 2000, log[-3000:]
    # A spin takes a whole core; measured ~0.1-0.3 of one (the kernel's own work included).
    assert cpu < 0.7 * wall, log[-3000:]
    # logpace.NoteLimit: a burst of 3, then one per 30 s (a summary line among them): a few lines, not one per flap.
    assert log.count("added again") <= 5 and log.count("recursive routing") <= 4, log[-3000:]


def test_a_flush_of_every_tunnel_route_overflowing_the_watch_is_recovered(lab):
    """~1,000 RTM_DELROUTE at once: often more than the watch socket's queue holds (ENOBUFS, lost
    notifications), which counts as a hint; every route comes back."""
    client = lab.client
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15), client.log()[-3000:]
    # The flush's own count of what it deleted: a count read after it could race the keeper, which
    # puts the routes back RouteKeeper.SETTLE (0.2 s) after the first removal.
    out = lab.cli.run("ip -s -4 route flush dev tun0 proto static").stdout
    deleted = sum(int(n) for n in re.findall(r"deleting (\d+) entries", out))
    assert deleted >= PUSHED, out
    why = _wait_right(lab)
    # The route watch's socket (groups link + IPv4/IPv6 routes: 0x441) and what the kernel
    # dropped for it: printed, not asserted (the reader may keep up); measured 0 to ~750.
    watch = [r.split() for r in lab.cli.run("cat /proc/net/netlink").stdout.splitlines()[1:]]
    print("route watch notifications dropped by the kernel (ENOBUFS):",
          [r[8] for r in watch if len(r) > 8 and r[1] == "0" and r[3] == "00000441"])
    assert not why, why + client.log()[-3000:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15), client.log()[-3000:]
    assert client.log().count("tunnel up") == 1, client.log()[-3000:]
