"""What a VPN server can send into the router's LAN (lab/router_lab.py, Debian's OpenVPN 2.6 server).

A hostile server -- or anyone it routes to us -- holds the tunnel's far end: whatever it puts into
the tunnel towards a LAN address reaches the appliance's TUN. OpenVPN 2.6 as a router forwards all
of it (it is only a TUN device; the host's firewall decides). Ours, with `nat = true` (the
default), forwards from the tunnel to the LAN only what belongs to connections the LAN began
(killswitch.py: `ct state established,related`); with `nat = false` the LAN is routed and the
tunnel side may open connections into it, as documented for that key. Debian's server is made to
route the LAN into our tunnel (`route` + `iroute`, IPv4 and IPv6), then pings and opens TCP
connections to a LAN host from the server's side while the LAN host's own NIC is captured.
"""
from __future__ import annotations

import subprocess

import pytest

from lab.router_lab import BEHIND, BEHIND6, LAN6_APP, LAN_APP, RouterLab, client_profile, server_config

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

LAN_HOST, LAN6_HOST = "198.18.50.10", "fd18:50::10"
TUNNEL_SIDE = "src net 198.19.0.0/24 or src net 2001:db8:19::/64"     # the server's tunnel addresses
PORT = 7777


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP} && "
                    f"ip -6 addr add {LAN6_HOST}/64 dev {lab.lan_host_if} nodad && "
                    f"ip -6 route add default via {LAN6_APP}")
        ccd = lab.tmp / "ccd"
        ccd.mkdir()
        (ccd / "client1").write_text("iroute 198.18.50.0 255.255.255.0\niroute-ipv6 fd18:50::/64\n")
        lab.openvpn_server(server_config(lab.pki, push_dns=False, extra=(
            f"client-config-dir {ccd}\nroute 198.18.50.0 255.255.255.0\nroute-ipv6 fd18:50::/64\n")))
        # a TCP listener on the LAN host (both families), for the server's connection attempts
        lab.start(lab.lan, ["python3", "-c",
                            "import socket,time\ns=socket.create_server(('::', %d), family=socket.AF_INET6, "
                            "dualstack_ipv6=True)\ns.settimeout(1)\nend=time.time()+300\n"
                            "while time.time()<end:\n try: s.accept()[0].close()\n except OSError: pass\n" % PORT],
                  "listener")
        yield lab


def _lan_capture(lab, name: str):
    pcap = lab.tmp / f"{name}.pcap"
    p = lab.start(lab.lan, ["tcpdump", "-i", lab.lan_host_if, "-n", "-U", "-w", str(pcap), TUNNEL_SIDE],
                  f"tcpdump-{name}")
    assert p.wait_for("listening on", 10), p.log()
    p.pcap = pcap  # type: ignore[attr-defined]      (RouterLab.stop_capture's)
    return p, pcap


def _captured(lab, p, pcap) -> list[str]:
    lab.stop_capture(p)
    r = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=30)
    return [ln for ln in r.stdout.splitlines() if ln.strip()]


def _probe_the_lan_from_the_server(lab) -> dict[str, bool]:
    """Pings and TCP connections from the server's side (its tunnel addresses) to the LAN host."""
    connect = lab.write("connect.py", "import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], %d), "
                        "timeout=3).close()\nexcept OSError:\n    sys.exit(1)\n" % PORT)
    out = {}
    for host in (LAN_HOST, LAN6_HOST):
        fam = "-6 " if ":" in host else ""
        out[f"ping {host}"] = lab.wan.run(f"ping {fam}-c 2 -i 0.3 -W 2 {host}", check=False,
                                          timeout=30).returncode == 0
        out[f"tcp {host}"] = lab.wan.run(f"python3 {connect} {host}", check=False, timeout=30).returncode == 0
    return out


def test_with_nat_the_server_opens_nothing_into_the_lan(lab):
    app = lab.appliance(lab.appliance_toml(client_profile(lab.pki), lan_extra=f'address6 = "{LAN6_APP}/64"\n'))
    try:
        # the tunnel carries the LAN's own connections, and their answers come back into the LAN
        assert lab.lan.run(f"ping -c 1 -W 3 {BEHIND}", check=False, timeout=30).returncode == 0
        assert lab.lan.run(f"ping -6 -c 1 -W 3 {BEHIND6}", check=False, timeout=30).returncode == 0
        cap, pcap = _lan_capture(lab, "nat")
        probes = _probe_the_lan_from_the_server(lab)
        seen = _captured(lab, cap, pcap)
        assert not any(probes.values()), probes
        assert seen == [], "\n".join(seen[:20])
        assert app.alive(), app.log()[-3000:]
    finally:
        app.stop(10)


def test_without_nat_the_lan_is_routed_both_ways_as_2_6_routes_it(lab):
    toml = lab.appliance_toml(client_profile(lab.pki), lan_extra=f'address6 = "{LAN6_APP}/64"\n', nat=False)
    app = lab.appliance(toml)
    try:
        cap, pcap = _lan_capture(lab, "routed")
        probes = _probe_the_lan_from_the_server(lab)
        seen = _captured(lab, cap, pcap)
        assert all(probes.values()), probes
        assert seen, "nothing from the tunnel side reached the LAN host"
        assert app.alive(), app.log()[-3000:]
    finally:
        app.stop(10)
