"""Layer 2 with DHCP over the bridge, against Debian's OpenVPN 2.6, in namespaces: a plain
`server-bridge` (no pool: clients take their address from a DHCP server on the bridged LAN) and
`route-gateway dhcp`, which such a server pushes.

One lab: a bridge with the LAN's DHCP server (dnsmasq, handing out addresses and offering its
router 198.19.1.1), Debian's `server-bridge` server on one tap port of it and ours on another.
Each client's up script runs a DHCP client (busybox udhcpc, in the background as 2.6's own
synchronous up script needs) that writes down what it was given.

What a user checks: the client's tap gets a lease through the tunnel and pings the LAN both ways;
with `route-gateway dhcp` pushed the DHCP client sees no router (2.6 pads the Router option out of
the reply, so the LAN's router never becomes the client's default route) and the client logs the
router it read; with `server-bridge nogw` nothing is pushed and the DHCP client sees the router.
"""
from __future__ import annotations

import json
import re
import sys

import pytest

from lab.attacks import FORGED_DHCP_ACKS
from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, Lab, until

LAN_ROUTER = "198.19.1.1"                   # the bridge's address: the LAN's DHCP server and its router
DEBIAN_PORT, OURS_PORT = 1194, 1195


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("tapdhcp")) as lab:
        s = lab.srv
        s.run(f"ip link add br0 type bridge && ip addr add {LAN_ROUTER}/24 dev br0 && ip link set br0 up")
        lab.dnsmasq = lab.start(s, ["dnsmasq", "-d", "-k", "--conf-file=/dev/null", "--interface=br0",
                                    "--bind-interfaces", "--port=0", "--dhcp-range=198.19.1.100,198.19.1.150,255.255.255.0,1h",
                                    f"--dhcp-option=option:router,{LAN_ROUTER}",
                                    f"--dhcp-leasefile={lab.tmp / 'dnsmasq.leases'}",
                                    f"--pid-file={lab.tmp / 'dnsmasq.pid'}"], "dnsmasq")
        assert lab.dnsmasq.wait_for("DHCP, IP range", 20), lab.dnsmasq.log()
        # Debian's bridged server: its up script puts its tap into the bridge (2.6's recipe).
        up = lab.write("bridge-up.sh", '#!/bin/sh\nip link set "$1" master br0 && ip link set "$1" up\n')
        up.chmod(0o755)
        lab.debian = lab.openvpn(s, bridged_server(lab, "server-bridge", DEBIAN_PORT, "tap0")
                                 + f"script-security 2\nup {up}\n", "debsrv")
        # Ours opens a persistent tap already in the bridge (it runs no up script).
        s.run("ip tuntap add dev tap1 mode tap && ip link set tap1 master br0")
        try:
            yield lab
        finally:
            lab.debian.stop_promptly(5)
            s.run("ip link del tap1", check=False)


def bridged_server(lab, line: str, port: int, dev: str) -> str:
    text = (server_config(lab.pki, port=port).replace("dev tun", f"dev {dev}").replace("topology subnet\n", "")
            .replace("server 198.19.0.0 255.255.255.0\n", line + "\n"))
    return text + 'push "redirect-gateway def1"\n'         # beside the lab's pushed route: both need a gateway


def dhcp_profile(lab, port: int, name: str) -> tuple[str, object]:
    """A tap profile whose up script brings the tap up and starts udhcpc on it in the background
    (-q: it leaves once bound); the udhcpc script writes each event with the router it was given
    and puts the leased address on the tap. -> (profile text, the events file)."""
    events = lab.tmp / f"{name}-dhcp.log"
    hook = lab.write(f"{name}-udhcpc.sh", f'#!/bin/sh\necho "$1 ip=$ip router=$router" >> {events}\n'
                     'case "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface";; esac\n')
    hook.chmod(0o755)
    up = lab.write(f"{name}-up.sh", '#!/bin/sh\nip link set "$1" up\n'
                   f'busybox udhcpc -i "$1" -s {hook} -p {lab.tmp / (name + "-udhcpc.pid")} -q -n -t 15 -T 1 '
                   f'>{lab.tmp / (name + "-udhcpc.out")} 2>&1 &\n')
    up.chmod(0o755)
    prof = (client_profile(lab.pki, remotes=[(SRV_IP, port, "udp")]).replace("dev tun", "dev tap")
            + f"script-security 2\nup {up}\n")
    return prof, events


def stop_udhcpc(lab, name: str) -> None:
    """The DHCP client by its PID, if it is still there (it leaves by itself once bound)."""
    pid = lab.tmp / f"{name}-udhcpc.pid"
    if pid.exists() and pid.read_text().strip().isdigit():
        lab.srv.run(f"kill {int(pid.read_text())} 2>/dev/null || true", check=False)


def leased(lab, events, ns) -> str:
    """The address the DHCP client was bound to, once on the tap."""
    assert until(lambda: events.exists() and "bound ip=" in events.read_text(), 25), \
        events.read_text() if events.exists() else "the DHCP client never wrote"
    ip = re.search(r"bound ip=(\S+)", events.read_text()).group(1)
    assert until(lambda: any(a.get("local") == ip for a in _addrs(ns)), 5), _addrs(ns)
    return ip


def _addrs(ns) -> list:
    out = ns.run("ip -j -4 addr show dev tap0").stdout
    return json.loads(out)[0].get("addr_info", []) if out.strip() else []


def test_our_client_reads_route_gateway_dhcp_from_debians_bridge(lab):
    """Debian's plain `server-bridge` pushes `route-gateway dhcp`: our client gets its lease from
    the LAN through the tunnel, its DHCP client sees no router (padded out, as 2.6 does), the log
    names the router read, and the pushed route -- set before any reply could give a gateway --
    is skipped as 2.6 skips it; the LAN is reached both ways. (The pushed redirect-gateway is
    filtered out here: without route-delay it waits for the DHCP router, the next test.)"""
    prof, events = dhcp_profile(lab, DEBIAN_PORT, "ours")
    ours = lab.ours(lab.cli, prof + 'pull-filter ignore "redirect-gateway"\n', "ours")
    try:
        ip = leased(lab, events, lab.cli)
        assert ip.startswith("198.19.1.")
        bound = re.search(r"bound ip=\S+ router=(\S*)", events.read_text()).group(1)
        assert bound == "", f"the DHCP client was given the LAN's router {bound!r}"
        assert until(lambda: f"Extracted DHCP router address: {LAN_ROUTER}" in ours.log(), 5), ours.log()[-2000:]
        assert "route-gateway dhcp" in ours.log()
        routes = lab.cli.run("ip -4 route show").stdout
        assert "198.18.100.0/24" not in routes and "0.0.0.0/1" not in routes, routes
        assert lab.ping(lab.cli, LAN_ROUTER, 3) == 3, "our client cannot reach the LAN"
        assert lab.ping(lab.srv, ip, 2) == 2, "the LAN cannot reach our client"
    finally:
        ours.stop_promptly(5)
        stop_udhcpc(lab, "ours")


def test_a_redirect_without_route_delay_waits_for_the_dhcp_router_where_debians_client_runs_unredirected(lab):
    """Debian's bridge pushes `route-gateway dhcp` and `redirect-gateway def1`; the profile has no
    `route-delay`, so its routes are set before any DHCP reply. Debian's 2.6.14 client says "NOTE:
    unable to redirect IPv4 default gateway -- VPN gateway parameter (--route-gateway or
    --ifconfig) is missing" and comes up ("Initialization Sequence Completed") with no redirect --
    all traffic outside the tunnel the user asked for. Ours (tapredir49) takes the same profile
    unchanged: the routes wait for the router of the DHCP ACK on the tap, the redirect's halves
    unreachable meanwhile (the up script, run before the lease, finds an outside address
    refused), then go in via that router, and route-up runs with redirect_gateway=1."""
    prof = client_profile(lab.pki, remotes=[(SRV_IP, DEBIAN_PORT, "udp")]).replace("dev tun", "dev tap")
    deb = lab.openvpn(lab.cli, prof, "deb-nogw")
    try:
        deb_routes = lab.cli.run("ip -4 route show").stdout
        deb_log = deb.log()
    finally:
        deb.stop_promptly(5)
    assert "0.0.0.0/1" not in deb_routes, deb_routes
    assert "Initialization Sequence Completed" in deb_log
    assert "unable to redirect IPv4 default gateway -- VPN gateway parameter" in deb_log, deb_log[-3000:]

    ours_prof, events = dhcp_profile(lab, DEBIAN_PORT, "ours-nodelay")
    seen = lab.tmp / "ours-nodelay-route-get.txt"
    dhcp_up = re.search(r"^up (\S+)$", ours_prof, re.M).group(1)
    up = lab.write("ours-nodelay-up0.sh", f'#!/bin/sh\nip route get 198.18.99.1 >> {seen} 2>&1\nexec {dhcp_up} "$@"\n')
    up.chmod(0o755)
    out = lab.tmp / "ours-nodelay-route-up.txt"
    ru = lab.write("ours-nodelay-route-up.sh", f'#!/bin/sh\nenv > {out}.new && mv {out}.new {out}\n')
    ru.chmod(0o755)
    ours_prof = ours_prof.replace(f"up {dhcp_up}\n", f"up {up}\nroute-up {ru}\n")
    ours = lab.ours(lab.cli, ours_prof, "ours-nodelay")
    try:
        leased(lab, events, lab.cli)
        assert until(out.exists, 20), ours.log()[-3000:]
        env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        routes = lab.cli.run("ip -4 route show").stdout
        held = lab.cli.run("ip -4 route show type unreachable").stdout
        log = ours.log()
        reach = lab.ping(lab.cli, LAN_ROUTER, 3)
    finally:
        ours.stop_promptly(5)
        stop_udhcpc(lab, "ours-nodelay")
    assert "No route to host" in seen.read_text(), seen.read_text()     # during the wait: refused, not outside
    assert "route-gateway dhcp with redirect-gateway and no route-delay" in log, log[-3000:]
    assert "restarting" not in log and "cannot add the routes" not in log, log[-3000:]    # one connection
    assert f"0.0.0.0/1 via {LAN_ROUTER} dev tap0" in routes and f"128.0.0.0/1 via {LAN_ROUTER} dev tap0" in routes, \
        (routes, log[-3000:])
    assert held.strip() == "", held                 # the holds went once the halves were in
    assert env.get("redirect_gateway") == "1" and env.get("route_vpn_gateway") == LAN_ROUTER, env
    waited = re.search(r"routes in via the DHCP router \S+, ([\d.]+) s after tunnel-up", log)
    assert waited is not None, log[-3000:]
    print(f"ours waited {waited.group(1)} s for the DHCP router (no route-delay)")
    assert reach == 3, "our client cannot reach the LAN"


def test_forged_acks_from_a_lan_host_do_not_take_our_clients_redirect(lab):
    """atk50: a host on the bridged LAN broadcasts DHCP ACKs naming the LAN's broadcast address
    198.19.1.255 as the router, every 0.2 s from before our client connects until after its
    lease (no DHCP client takes them: each has its own transaction id). Our data path reads them
    as any ACK, as 2.6's does. Before, the last ACK's router was the one: the broadcast, taken as
    on the tap's network, the kernel refused the halves via it ("the kernel refused its routes
    (Invalid argument)"), the connection ended, and each reconnect reused that router at once: a
    restart loop. Now the broadcast is no router on the tap's network; the redirect goes via
    dnsmasq's real router, on the first connection."""
    forger = lab.start(lab.srv, [sys.executable, "-c", FORGED_DHCP_ACKS, "br0", "198.19.1.255", "198.19.1.66",
                                 "0.2", "1000"], "dhcp-forger")
    ours_prof, events = dhcp_profile(lab, DEBIAN_PORT, "ours-forged")
    out = lab.tmp / "ours-forged-route-up.txt"
    ru = lab.write("ours-forged-route-up.sh", f'#!/bin/sh\nenv > {out}.new && mv {out}.new {out}\n')
    ru.chmod(0o755)
    ours = lab.ours(lab.cli, ours_prof + f"route-up {ru}\n", "ours-forged")
    try:
        leased(lab, events, lab.cli)
        assert until(out.exists, 30), ours.log()[-3000:]
        assert forger.alive(), forger.log()         # still forging after the routes went in
        env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        routes = lab.cli.run("ip -4 route show").stdout
        outside = lab.cli.run("ip route get 198.18.99.1", check=False)
        log = ours.log()
        reach = lab.ping(lab.cli, LAN_ROUTER, 3)
    finally:
        forger.stop()
        ours.stop_promptly(5)
        stop_udhcpc(lab, "ours-forged")
    assert "Extracted DHCP router address: 198.19.1.255" in log, log[-3000:]    # the forged ACKs reached it
    assert env.get("redirect_gateway") == "1" and env.get("route_vpn_gateway") == LAN_ROUTER, (env, log[-3000:])
    assert f"0.0.0.0/1 via {LAN_ROUTER} dev tap0" in routes and f"128.0.0.0/1 via {LAN_ROUTER} dev tap0" in routes, \
        (routes, log[-3000:])
    assert f"via {LAN_ROUTER} dev tap0" in outside.stdout, outside.stdout + outside.stderr
    assert "routes not all installed" not in log and "restarting" not in log, log[-3000:]
    assert reach == 3, "our client cannot reach the LAN"

@pytest.mark.parametrize("line, router", [("server-bridge", ""), ("server-bridge nogw", LAN_ROUTER)])
def test_debians_client_leases_through_our_bridge(lab, line, router):
    """Our plain `server-bridge`: Debian's client gets its lease from the LAN's DHCP server
    through us and pings the LAN both ways. Its DHCP client is given no router when we push
    `route-gateway dhcp` (2.6 pads it out), and the LAN's router with `nogw` (nothing pushed)."""
    name = "nogw" if "nogw" in line else "dhcp"
    srv = lab.ours(lab.srv, bridged_server(lab, line, OURS_PORT, "tap1"), f"oursrv-{name}",
                   pattern=r"listening on UDP")
    cli = None
    try:
        prof, events = dhcp_profile(lab, OURS_PORT, f"deb-{name}")
        cli = lab.openvpn(lab.cli, prof, f"debcli-{name}")
        pushed = re.search(r"PUSH_REPLY,([^']*)", cli.log()).group(1)
        assert ("route-gateway dhcp" in pushed) == (router == ""), pushed
        assert "ifconfig" not in pushed, pushed
        ip = leased(lab, events, lab.cli)
        got = re.search(r"bound ip=\S+ router=(\S*)", events.read_text()).group(1)
        assert got == router, f"the DHCP client was given router {got!r}"
        assert lab.ping(lab.cli, LAN_ROUTER, 3) == 3, "Debian's client cannot reach the LAN through us"
        assert lab.ping(lab.srv, ip, 2) == 2, "the LAN cannot reach Debian's client through us"
    finally:
        if cli is not None:
            cli.stop_promptly(5)
        stop_udhcpc(lab, f"deb-{name}")
        srv.stop_promptly(8)


ROUTE_DELAY = 8             # past the lease (udhcpc binds ~3 s after up here), well inside the test's bounds


def _route_delay_run(lab, start, name: str) -> tuple[dict, str, str]:
    """A client of Debian's `server-bridge` (route-gateway dhcp and redirect-gateway def1 pushed,
    and a gateless route) with `route-delay`, a profile route via the LAN's router and one with
    no gateway, and a route-up script writing its environment and the routes it saw.
    -> (route-up's environment, the routes it saw, the client's log)."""
    prof, events = dhcp_profile(lab, DEBIAN_PORT, name)
    out = lab.tmp / f"{name}-route-up.txt"
    ru = lab.write(f"{name}-route-up.sh", f'#!/bin/sh\n{{ env; echo ROUTES; ip -4 route show dev "$dev"; }} > {out}.new\n'
                   f'mv {out}.new {out}\n')
    ru.chmod(0o755)
    prof += (f"route-delay {ROUTE_DELAY}\nroute-up {ru}\n"
             f"route 198.18.77.0 255.255.255.0 {LAN_ROUTER}\nroute 198.18.78.0 255.255.255.0\n")
    proc = start(prof, name)
    try:
        leased(lab, events, lab.cli)
        assert until(out.exists, ROUTE_DELAY + 15), proc.log()[-3000:]
        env_text, _, seen = out.read_text().partition("ROUTES\n")
        env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line)
        return env, seen, proc.log()
    finally:
        proc.stop_promptly(5)
        stop_udhcpc(lab, name)


def _routes_of(seen: str) -> set[str]:
    return {" ".join(line.split()[:3]) for line in seen.splitlines() if " via " in line}


def test_route_delay_adds_routes_via_the_dhcp_router_as_debians_client(lab):
    """`route-gateway dhcp` (pushed) with `route-delay`: as Debian's client, ours adds, once the
    delay is over, redirect-gateway's halves via the router the DHCP ACK gave and the route with
    a gateway of its own; the routes with none are dropped (2.6 makes its route list before any
    reply); route-up runs then (after the lease: it sees the leased network) with
    route_vpn_gateway the learned router and redirect_gateway=1, as Debian's."""
    deb_env, deb_seen, _ = _route_delay_run(lab, lambda p, n: lab.openvpn(lab.cli, p, n), "deb-delay")
    our_env, our_seen, our_log = _route_delay_run(lab, lambda p, n: lab.ours(lab.cli, p, n), "ours-delay")
    want = {f"0.0.0.0/1 via {LAN_ROUTER}", f"128.0.0.0/1 via {LAN_ROUTER}", f"198.18.77.0/24 via {LAN_ROUTER}"}
    assert _routes_of(deb_seen) == want, deb_seen
    assert _routes_of(our_seen) == want, (our_seen, our_log[-3000:])
    for env in (deb_env, our_env):
        assert "198.19.1.0/24" in (deb_seen if env is deb_env else our_seen)     # after the lease
    keys = ("route_vpn_gateway", "redirect_gateway", "script_type", "dev_type")
    assert {k: deb_env.get(k) for k in keys} == {"route_vpn_gateway": LAN_ROUTER, "redirect_gateway": "1",
                                                 "script_type": "route-up", "dev_type": "tap"}, deb_env
    assert {k: our_env.get(k) for k in keys} == {k: deb_env.get(k) for k in keys}, our_env
    per_route = lambda e: sorted(k for k in e if k.startswith("route_") and k[-1].isdigit())   # noqa: E731
    assert per_route(our_env) == per_route(deb_env), (our_env, deb_env)
