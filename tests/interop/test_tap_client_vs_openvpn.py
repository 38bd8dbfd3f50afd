"""Our client with a `dev tap` profile (layer 2) against Debian's OpenVPN 2.6 server, in namespaces.

Two servers, one lab: a routed tap server (`dev tap` + `server NET MASK`, pushing `ifconfig IP
NETMASK`, `route-gateway` and a route) with our client and Debian's own tap client side by side
(client-to-client: the server switches frames between them); and a bridged one (`server-bridge`
with no pool: no ifconfig pushed) whose tap sits in a bridge with a LAN host behind it, which our
client reaches at layer 2 once its up script gave the tap an address, as a DHCP client would.
What a user checks: the addresses and routes, pings both ways, the pushed route, ARP answered on
the tap (the neighbour is the far end's real MAC address), a TCP transfer, and that Debian's
server saw the same device type and MTU in our OCC options string as in its own client's.
"""
from __future__ import annotations

import json
import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, SRV_IP, TUN_SERVER_IP, Lab, until

LAN_HOST, LAN_CLIENT = "198.18.60.1", "198.18.60.10"     # the bridged LAN and our client's address on it
BRIDGE_PORT = 1195
LLADDR = "02:00:5e:10:00:01"      # our client's `lladdr`: the tap's MAC address the server's ARP learns
POOL6, SERVER6 = "2001:db8:100::/64", "2001:db8:100::1"
BEHIND6, BEHIND6_HOST = "2001:db8:200::/64", "2001:db8:200::1"    # pushed route-ipv6, a host on it


def _mac(ns, dev: str) -> str:
    return json.loads(ns.run(f"ip -j link show dev {dev}").stdout)[0]["address"]


def _neighbour(ns, dev: str, ip: str) -> str | None:
    """The MAC address the kernel resolved for `ip` on `dev` (ARP), or None."""
    for n in json.loads(ns.run(f"ip -j neigh show dev {dev}").stdout or "[]"):
        if n.get("dst") == ip and "lladdr" in n:
            return n["lladdr"]
    return None


def _syn_mss(lab, client_ns, client_ip: str) -> str:
    """The MSS option of a TCP SYN from `client_ip` as the server's tap receives it (tcpdump)."""
    dump = lab.start(lab.srv, ["tcpdump", "-l", "-n", "-v", "-i", "tap0", "-c", "1",
                               f"tcp[tcpflags] & tcp-syn != 0 and src host {client_ip}"], f"syn-{client_ip}")
    try:
        assert dump.wait_for("listening on", 20), dump.log()
        client_ns.run(f"timeout 3 bash -c 'exec 3<>/dev/tcp/{TUN_SERVER_IP}/9'", check=False)
        dump.wait_for(r"mss \d+", 10)
        m = re.search(r"mss (\d+)", dump.log())
        return m.group(1) if m else f"none in {dump.log()[-500:]!r}"
    finally:
        dump.stop(3)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("tap")) as lab:
        srv_conf = (server_config(lab.pki, extra=f'client-to-client\nmssfix 0\nserver-ipv6 {POOL6}\npush "route-ipv6 {BEHIND6}"\n'
                                               'push "redirect-gateway def1"\n')
                    .replace("dev tun", "dev tap0").replace("topology subnet\n", "").replace("verb 3", "verb 7"))
        lab.srv.run(f"ip -6 addr add {BEHIND6_HOST}/128 dev lo")
        lab.routed = lab.openvpn(lab.srv, srv_conf, "tapsrv")
        # The bridged server: a bridge with a LAN host on a veth, and the server's tap put into it
        # by the server's own up script (as a server-bridge deployment does).
        lan = lab._ns("lan")
        lab.srv.run("ip link add br0 type bridge && ip link set br0 up")
        lab.srv.run(f"ip link add lana type veth peer name lanb netns {lan.name}")
        lab.srv.run("ip link set lana master br0 && ip link set lana up")
        lan.run(f"ip addr add {LAN_HOST}/24 dev lanb && ip link set lanb up")
        lab.lan = lan
        up = lab.write("bridge-up.sh", '#!/bin/sh\nip link set "$1" master br0 && ip link set "$1" up\n')
        up.chmod(0o755)
        bridge_conf = (server_config(lab.pki, port=BRIDGE_PORT)
                       .replace("dev tun", "dev tap1").replace("topology subnet\n", "")
                       .replace("server 198.19.0.0 255.255.255.0\n", "server-bridge\n")
                       + f"script-security 2\nup {up}\n")
        bridge_conf = "\n".join(ln for ln in bridge_conf.splitlines() if not ln.startswith("push ")) + "\n"
        lab.bridged = lab.openvpn(lab.srv, bridge_conf, "bridgesrv")
        yield lab


def test_routed_tap_server_our_client_and_debians(lab):
    """`dev tap` + `server`: the pushed `ifconfig IP NETMASK` on our tap, the pushed route via
    route-gateway, ARP on the tap, pings both ways, to Debian's tap client through the server's
    switch, and a TCP transfer; Debian's server logs no dev-type/tun-mtu inconsistency for us."""
    other = lab.add_client_ns(1)
    # The server's address on that namespace's own veth (the server answers from it).
    theirs = lab.openvpn(other, client_profile(lab.pki, client="client2", remotes=[("198.18.2.1", 1194, "udp")])
                         .replace("dev tun", "dev tap"), "theirs")
    ours = lab.ours(lab.cli, client_profile(lab.pki).replace("dev tun", "dev tap") + f"lladdr {LLADDR}\n", "ours")
    try:
        addr = json.loads(lab.cli.run("ip -j -4 addr show dev tap0").stdout)[0]["addr_info"][0]
        assert addr["prefixlen"] == 24 and addr["local"].startswith("198.19.0.") and "address" not in addr, addr
        mine = addr["local"]
        pushed = re.search(r"server pushed: (.*)", ours.log())        # 2.6's tap server pushes no topology
        assert pushed and f"ifconfig {mine} 255.255.255.0" in pushed.group(1) and "topology" not in pushed.group(1)
        routes = lab.cli.run("ip -4 route show 198.18.100.0/24").stdout
        assert f"via {TUN_SERVER_IP} dev tap0" in routes, routes
        assert f"via {TUN_SERVER_IP} dev tap0" in other.run("ip -4 route show 198.18.100.0/24").stdout
        for ns in (lab.cli, other):             # redirect-gateway def1: its halves via route-gateway too
            halves = ns.run("ip -4 route show 0.0.0.0/1; ip -4 route show 128.0.0.0/1").stdout
            assert halves.count(f"via {TUN_SERVER_IP} dev tap0") == 2, halves
        assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3, "our client cannot ping the server's tap address"
        assert _neighbour(lab.cli, "tap0", TUN_SERVER_IP) == _mac(lab.srv, "tap0"), \
            "ARP on our tap did not resolve the server's tap address to its MAC"
        assert lab.ping(lab.cli, BEHIND_IP, 2) == 2, "the pushed route (via route-gateway) does not work"
        assert lab.ping(lab.srv, mine, 2) == 2, "the server cannot ping our client's tap address"
        r6 = lab.cli.run(f"ip -6 route show {BEHIND6}").stdout
        assert f"via {SERVER6} dev tap0" in r6, r6      # as 2.6 on tap: via ifconfig-ipv6's remote
        assert f"via {SERVER6} dev tap0" in other.run(f"ip -6 route show {BEHIND6}").stdout     # Debian's client
        assert lab.ping(lab.cli, BEHIND6_HOST, 2) == 2, "the pushed route-ipv6 does not work"
        assert _neighbour(lab.srv, "tap0", mine) == _mac(lab.cli, "tap0") == LLADDR     # the profile's lladdr
        theirs_ip = json.loads(other.run("ip -j -4 addr show dev tap0").stdout)[0]["addr_info"][0]["local"]
        assert lab.ping(lab.cli, theirs_ip, 2) == 2, "our client cannot reach Debian's tap client (client-to-client)"
        assert _neighbour(lab.cli, "tap0", theirs_ip) == _mac(other, "tap0"), "no layer-2 path to Debian's client"
        assert lab.ping(other, mine, 2) == 2
        # mssfix inside Ethernet frames: the SYN's MSS clamped as Debian's own tap client clamps it
        # (1368 = 2.6's default 1492 less the headers and tun-mtu-extra's 32); the server's own
        # clamping is off (mssfix 0), so what it sees is the client's doing.
        assert _syn_mss(lab, lab.cli, mine) == _syn_mss(lab, other, theirs_ip) == "1368"
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 1_000_000) > 0, "TCP client→server failed"
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 1_000_000, reverse=True) > 0
        log = lab.routed.log()
        # What 2.6 compares at verb 7: both clients' options strings are the one it expects for
        # a tap client (link-mtu with tap's 32, the BF-CBC form without a `cipher` line); before,
        # ours carried AES-256-GCM's figures and 2.6 logged link-mtu, auth and keysize as inconsistent.
        assert log.count("Expected Remote Options String (VER=V4): 'V4,dev-type tap,") >= 2
        assert "is used inconsistently" not in log and "config but missing in" not in log, log[-3000:]
    finally:
        ours.stop(5)
        theirs.stop(5)


def test_bridged_server_lan_host_at_layer_2(lab):
    """`server-bridge` without a pool pushes no ifconfig: our tap comes up without an address,
    the profile's up script gives it one (as its DHCP client would), and the LAN host behind the
    server's bridge answers ARP and pings through the tunnel; it reaches us back."""
    up = lab.write("client-up.sh", f'#!/bin/sh\nip addr add {LAN_CLIENT}/24 dev "$1"\n')
    up.chmod(0o755)
    prof = (client_profile(lab.pki, remotes=[(SRV_IP, BRIDGE_PORT, "udp")]).replace("dev tun", "dev tap")
            + f"script-security 2\nup {up}\n")
    ours = lab.ours(lab.cli, prof, "ours-bridge")
    try:
        assert "up without an address" in ours.log(), ours.log()[-2000:]
        assert until(lambda: LAN_CLIENT in lab.cli.run("ip -4 addr show dev tap0").stdout, 10)
        assert lab.wait_ping(lab.cli, LAN_HOST, 15), f"the LAN host behind the bridge is not reached:\n{ours.log()[-2000:]}"
        assert _neighbour(lab.cli, "tap0", LAN_HOST) == _mac(lab.lan, "lanb"), "ARP did not cross the bridge"
        assert lab.ping(lab.lan, LAN_CLIENT, 2) == 2, "the LAN host cannot reach our client"
        pushed = re.search(r"server pushed: (.*)", ours.log())
        assert pushed and "ifconfig" not in pushed.group(1), "server-bridge pushed an address after all"
    finally:
        ours.stop(5)
