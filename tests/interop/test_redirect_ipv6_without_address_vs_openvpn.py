"""`redirect-gateway def1 ipv6` pushed by an IPv4-only server (no `ifconfig-ipv6`), against
Debian's OpenVPN 2.6.14 (helper tapredir49). 2.6.14's client adds its IPv6 redirect routes out of
tun0 all the same (route.c: "WARNING: OpenVPN was configured to add an IPv6 route. However, no
IPv6 has been configured for tun0 ...", then ::/3, 2000::/4, 3000::/4 and fc00::/7 dev tun0), so
IPv6 goes into the tunnel, not by the host's own IPv6 route. Ours warned "IPv6 is not redirected"
and left IPv6 outside the tunnel; now ::/1 and 8000::/1 go into tun0 and IPv6 read there is
answered as block-ipv6 answers it (gateway/block_ipv6.py). What a user checks: where an IPv6
destination is routed with the tunnel up."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import BEHIND_IP, Lab

DEST6 = "2001:db8:77::1"
WAN6, WAN6_GW = "2001:db8:1::2", "2001:db8:1::1"       # the client's own IPv6 way out (its veth)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def test_ipv6_goes_into_the_tunnel_with_debians_and_our_client(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra='push "redirect-gateway def1 ipv6"\n'), "srv-2.6")
    procs.append(srv)
    deb = lab.openvpn(lab.cli, client_profile(lab.pki), "cli-2.6")
    try:
        deb_route = lab.cli.run(f"ip -6 route get {DEST6}", check=False)
        deb_log = deb.log()
    finally:
        deb.stop_promptly(5)
    assert "no IPv6 has been configured for tun0" in deb_log, deb_log[-3000:]
    assert "dev tun0" in deb_route.stdout, deb_route.stdout + deb_route.stderr

    ours = lab.ours(lab.cli, client_profile(lab.pki), "ours-client")
    procs.append(ours)
    assert lab.wait_ping(lab.cli, BEHIND_IP, within=20), "no IPv4 through the tunnel"
    route = lab.cli.run(f"ip -6 route get {DEST6}", check=False)
    log = ours.log()
    assert "dev tun0" in route.stdout, (route.stdout + route.stderr, log[-3000:])
    assert "redirect-gateway ipv6 without ifconfig-ipv6: the tunnel carries no IPv6" in log, log[-3000:]
    # Answered at once from inside (as block-ipv6), not sent to the server nor out of the WAN.
    ping = lab.cli.run(f"ping -6 -n -c 1 -W 5 {DEST6}", check=False, timeout=15)
    assert "Destination unreachable" in ping.stdout, ping.stdout + ping.stderr
    assert log.count("tunnel up") == 1 and "cannot configure the tunnel" not in log, log[-3000:]


def test_pushed_default_ipv6_route_without_an_ipv6_tunnel(lab, procs):
    # redirect50: `route-ipv6 ::/0` pushed by an IPv4-only server, the client with its own IPv6
    # default route. Debian's 2.6.14 adds `::/0 dev tun0` ("WARNING: ... no IPv6 has been
    # configured for tun0"), at the host default's metric, behind it: IPv6 leaves by the client's
    # own route, outside the tunnel. Ours skipped the route (the same leak); now enforced as
    # redirect-gateway ipv6 without ifconfig-ipv6: into tun0, answered unreachable there.
    wan = f"vb{lab.tag}"
    lab.cli.run(f"ip -6 addr add {WAN6}/64 dev {wan} nodad && ip -6 route add default via {WAN6_GW} dev {wan}")
    try:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, extra='push "route-ipv6 ::/0"\n'), "srv-2.6-r6")
        procs.append(srv)
        deb = lab.openvpn(lab.cli, client_profile(lab.pki), "cli-2.6-r6")
        try:
            deb_routes = lab.cli.run("ip -6 route show default", check=False).stdout
            deb_route = lab.cli.run(f"ip -6 route get {DEST6}", check=False)
            deb_log = deb.log()
        finally:
            deb.stop_promptly(5)
        assert "add_route_ipv6(::/0" in deb_log and "dev tun0" in deb_routes, (deb_routes, deb_log[-3000:])
        assert f"dev {wan}" in deb_route.stdout, deb_route.stdout + deb_route.stderr   # 2.6: outside

        ours = lab.ours(lab.cli, client_profile(lab.pki), "ours-client-r6")
        procs.append(ours)
        assert lab.wait_ping(lab.cli, BEHIND_IP, within=20), "no IPv4 through the tunnel"
        route = lab.cli.run(f"ip -6 route get {DEST6}", check=False)
        log = ours.log()
        assert "dev tun0" in route.stdout, (route.stdout + route.stderr, log[-3000:])
        assert "route-ipv6 ::/0 without ifconfig-ipv6: the tunnel carries no IPv6" in log, log[-3000:]
        ping = lab.cli.run(f"ping -6 -n -c 1 -W 5 {DEST6}", check=False, timeout=15)
        assert "Destination unreachable" in ping.stdout, ping.stdout + ping.stderr
        ours.stop()
    finally:
        lab.cli.run(f"ip -6 route del default via {WAN6_GW} dev {wan}; ip -6 addr del {WAN6}/64 dev {wan}",
                    check=False)
