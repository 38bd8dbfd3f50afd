"""IPv6 in router mode, against Debian's OpenVPN server (lab/router_lab.py): what a LAN user sees.

One lab for the module (namespaces, PKI, web server, a WAN capture and a LAN capture for all of
it); two tests, each driving the appliance through a life:
- static WAN IPv6 with an IPv6 remote: an unconfigured LAN host (accept_ra=1) gets an address
  from our RA and downloads a file from behind the VPN over IPv6; the tunnel goes down (the
  server stops) and a final RA withdraws the router; the tunnel comes back from a server with no
  IPv6 and the LAN gets no RA at all, even when it solicits one; the WAN capture shows no LAN
  packet and no DNS throughout.
- WAN by SLAAC (an RA from the WAN namespace, built by our own codec): the appliance takes an
  address and reaches its IPv6 remote with it.
"""
from __future__ import annotations

import ipaddress
import re
import sys
import time
from pathlib import Path

import pytest

from lab.router_lab import BEHIND6, LAN6_APP, LAN6_NET, SECRET_NAME, WAN6_APP, WAN6_SRV, WEB_PORT, RouterLab, \
    client_profile, server_config

REPO = Path(__file__).resolve().parents[2]
EXTRA_SERVER = "proto udp6\nexplicit-exit-notify 1\n"     # dual-stack listener; tells clients when it stops


def wait_until(fn, seconds: float, step: float = 0.2):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def lan_addrs(lab: RouterLab) -> list[ipaddress.IPv6Interface]:
    out = lab.lan.run(f"ip -6 -o addr show dev {lab.lan_host_if} scope global", check=False).stdout
    return [ipaddress.IPv6Interface(m) for m in re.findall(r"inet6 (\S+)", out)]


def lan_default6(lab: RouterLab) -> str:
    return lab.lan.run("ip -6 route show default", check=False).stdout.strip()


def ping6(lab: RouterLab, dst: str) -> bool:
    return lab.lan.run(f"ping -6 -c 1 -W 1 {dst}", check=False, timeout=10).returncode == 0


def fetch_digest(lab: RouterLab, url: str) -> str:
    code = ("import hashlib,urllib.request;"
            f"print(hashlib.sha256(urllib.request.urlopen('{url}',timeout=15).read()).hexdigest())")
    r = lab.lan.run(f"{sys.executable} -c \"{code}\"", check=False, timeout=30)
    return r.stdout.strip() or r.stderr[-500:]


def aaaa_over_ipv6(lab: RouterLab, name: str) -> str:
    """From the LAN host: an AAAA query over UDP to the appliance's IPv6 LAN address (what the RA's
    RDNSS names); the AAAA records it got, or the error."""
    code = ("import socket,struct;from appliance.lan.dns_wire import encode_query;"
            "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);s.settimeout(5);"
            f"s.sendto(encode_query(4660,'{name}',28),('{LAN6_APP}',53));m=s.recv(4096);"
            "print([socket.inet_ntop(socket.AF_INET6,m[i+10:i+26]) for i in range(12,len(m)-25)"
            " if m[i:i+4]==bytes([0,28,0,1]) and m[i+8:i+10]==bytes([0,16])])")
    r = lab.lan.run(f"cd {REPO} && {sys.executable} -c \"{code}\"", check=False, timeout=30)
    return r.stdout.strip() or r.stderr[-500:]


def send_rs(lab: RouterLab) -> None:
    """A router solicitation from the LAN host (our codec's RS, sent with hop limit 255)."""
    code = ("import socket;from appliance.lan.icmpv6 import build_rs;"
            "s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6);"
            "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255);"
            f"s.sendto(build_rs(),('ff02::2',0,0,socket.if_nametoindex('{lab.lan_host_if}')))")
    lab.lan.run(f"cd {REPO} && {sys.executable} -c \"{code}\"")


def lan_ras(pcap: Path) -> list[tuple[float, object]]:
    """(time, scapy packet) of each RA on the LAN capture."""
    from scapy.all import ICMPv6ND_RA, rdpcap
    return [(float(p.time), p) for p in rdpcap(str(pcap)) if ICMPv6ND_RA in p]


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        lab.web_server()
        lab.lan.run(f"sysctl -qw net.ipv6.conf.{lab.lan_host_if}.accept_ra=1 "
                    f"net.ipv6.conf.{lab.lan_host_if}.accept_ra_defrtr=1 net.ipv6.conf.{lab.lan_host_if}.autoconf=1")
        yield lab


def profile6(lab: RouterLab) -> str:
    """The lab profile, its remote the server's IPv6 WAN address (resolved with AF_UNSPEC)."""
    return client_profile(lab.pki).replace("remote 198.18.0.1 1194", f"remote {WAN6_SRV} 1194")


def test_lan_gets_ipv6_through_the_tunnel_only_while_the_server_gives_it(lab):
    wan_cap = lab.capture("wan6")
    lan_cap = lab.start(lab.lan, ["tcpdump", "-i", lab.lan_host_if, "-n", "-U", "-w", str(lab.tmp / "lan6.pcap"),
                                  "icmp6"], "tcpdump-lan6")
    lan_cap.pcap = lab.tmp / "lan6.pcap"
    assert wait_until(lambda: "listening on" in lan_cap.log(), 10)
    server = lab.openvpn_server(server_config(lab.pki, extra=EXTRA_SERVER))
    lab.dns_server()
    toml = lab.appliance_toml(profile6(lab), wan_extra=f'address6 = "{WAN6_APP}/64"\ngateway6 = "{WAN6_SRV}"\n',
                              lan_extra=f'address6 = "{LAN6_APP}/64"\n')
    app = lab.appliance(toml)
    assert f"connecting to [{WAN6_SRV}]:1194 over UDP" in app.log(), app.log()[-3000:]
    assert f"default via {WAN6_SRV} dev {lab.wan_if}" in lab.app.run("ip -6 route show default").stdout

    # Up with IPv6: the LAN host autoconfigures from our RA and reaches the host behind the VPN.
    addrs = wait_until(lambda: [a for a in lan_addrs(lab) if a.ip in ipaddress.ip_network(LAN6_NET)], 30)
    assert addrs, f"no SLAAC address from the appliance's RA:\n{app.log()[-3000:]}"
    assert "via fe80::" in lan_default6(lab), "the RA made the appliance the LAN host's IPv6 router"
    assert wait_until(lambda: ping6(lab, BEHIND6), 15), "LAN → 2001:db8:100::1 through the tunnel"
    assert fetch_digest(lab, f"http://[{BEHIND6}]:{WEB_PORT}/file") == lab.web_digest
    assert not ping6(lab, WAN6_SRV), "the WAN is not reachable from the LAN over IPv6"
    assert aaaa_over_ipv6(lab, SECRET_NAME) == f"['{BEHIND6}']", "the RDNSS address resolves the VPN-only name"

    # Down: the server stops (and says so); a final RA withdraws us as router.
    mark = len(app.log())
    server.stop(10)
    assert app.wait_for("final router advertisement", 30, after=mark), app.log()[-3000:]
    assert wait_until(lambda: lan_default6(lab) == "", 10), f"default route kept: {lan_default6(lab)}"
    assert not ping6(lab, BEHIND6) and not ping6(lab, WAN6_SRV), "nothing over IPv6 while the tunnel is down"

    # Back, from a server with no IPv6: the LAN gets no RA, even when it asks.
    server = lab.openvpn_server(server_config(lab.pki, ipv6=False, extra=EXTRA_SERVER))
    assert app.wait_for("tunnel up", 60, after=mark), app.log()[-3000:]
    assert app.wait_for("pushed no IPv6", 5, after=mark), app.log()[-3000:]
    quiet_from = time.time()
    send_rs(lab)
    time.sleep(4)                                  # an answer would come within 0.5 s (3 s after the last RA)
    assert lan_default6(lab) == "", "no IPv6 router for the LAN while the server gives no IPv6"
    assert not ping6(lab, BEHIND6)

    app.stop(10)
    server.stop(10)
    lan_pcap = lab.stop_capture(lan_cap)
    wan_pcap = lab.stop_capture(wan_cap)
    ras = lan_ras(lan_pcap)
    from scapy.all import IPv6, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptRDNSS, ICMPv6NDOptMTU
    live = [p for _, p in ras if p[ICMPv6ND_RA].routerlifetime > 0]
    final = [p for _, p in ras if p[ICMPv6ND_RA].routerlifetime == 0]
    assert live and final, f"expected RAs with and without a router lifetime, got {len(live)}/{len(final)}"
    for p in live:
        assert p[IPv6].hlim == 255 and ipaddress.IPv6Address(p[IPv6].src).is_link_local
        assert p[ICMPv6NDOptPrefixInfo].prefix == "fd18:50::" and p[ICMPv6NDOptPrefixInfo].prefixlen == 64
        assert p[ICMPv6NDOptRDNSS].dns == [LAN6_APP], "RDNSS: the LAN address (the DNS forwarder is on)"
        assert 1280 <= p[ICMPv6NDOptMTU].mtu <= 1500
    assert all(p[ICMPv6NDOptPrefixInfo].preferredlifetime == 0 for p in final), "the prefix is deprecated"
    assert not [t for t, _ in ras if t >= quiet_from], "an RA while the server pushed no IPv6"
    leaks = lab.wan_leaks(wan_pcap)
    assert not leaks, "\n".join(leaks[:20])


def test_wan_ipv6_by_slaac_reaches_an_ipv6_remote(lab):
    server = lab.openvpn_server(server_config(lab.pki, extra=EXTRA_SERVER))
    # The WAN's router: our own RA codec in the server's namespace, every second for a bounded time.
    code = ("import socket,time,ipaddress;from appliance.lan.icmpv6 import *;"
            "ra=build_ra(RouterAdvert(600,(Prefix(ipaddress.IPv6Network('2001:db8:18::/64'),3600,1800),)));"
            "s=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6);"
            "s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_MULTICAST_HOPS,255);"
            f"i=socket.if_nametoindex('{lab.wan_peer_if}');"
            "[(s.sendto(ra,('ff02::1',0,0,i)),time.sleep(1)) for _ in range(60)]")
    radv = lab.start(lab.wan, [sys.executable, "-c", code], "wan-ra", env={"PYTHONPATH": str(REPO)})
    try:
        toml = lab.appliance_toml(profile6(lab), wan_extra="slaac = true\n", lan_extra=f'address6 = "{LAN6_APP}/64"\n')
        app = lab.appliance(toml, wait=60)
        out = lab.app.run(f"ip -6 -o addr show dev {lab.wan_if} scope global").stdout
        got = [ipaddress.IPv6Interface(a) for a in re.findall(r"inet6 (\S+)", out)]
        assert any(a.network == ipaddress.ip_network("2001:db8:18::/64") and "dynamic" in out for a in got), out
        assert "via fe80::" in lab.app.run("ip -6 route show default").stdout, "default route from the RA"
        assert wait_until(lambda: ping6(lab, BEHIND6), 20), "LAN → behind the VPN with a SLAAC WAN"
        app.stop(10)
        assert "slaac" in app.log().lower() and "error" not in app.log().lower(), app.log()[-3000:]
    finally:
        radv.stop(5)
        server.stop(10)
