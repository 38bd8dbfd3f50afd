"""The DNS forwarder against Debian's OpenVPN 2.6 server and dnsmasq behind it (lab/router_lab.py).

A LAN host (static address; DHCP is another test's) asks the appliance's LAN address for
`secret.vpn.test`, a name only the VPN side's dnsmasq knows, over UDP and TCP, for A and AAAA:
with DNS pushed as `dhcp-option DNS/DNS6` and as 2.6's `dns server N address`, each with an IPv4
and an IPv6 server (dnsmasq's log shows the query arriving from our IPv4 and IPv6 tunnel
addresses). With the OpenVPN server stopped, the answer is SERVFAIL at once; when it returns,
names resolve again. Throughout, the WAN capture shows no DNS in clear, and a counter ahead of the
kill switch shows the appliance never even tried to send DNS out of the WAN, though one pushed
server, 198.18.0.1, is an address the WAN reaches directly and there is no redirect-gateway.
The same dnsmasq answers some names with addresses of the LAN, loopback or the appliance (DNS
rebinding): the LAN host gets no address for them, while an intranet name's 10.x address passes.

One lab for the module: the OpenVPN server and the appliance are restarted between push forms.
"""
from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time

import pytest

from lab.router_lab import (BEHIND, BEHIND6, LAN_APP, SECRET_NAME, TUN6_SRV, TUN_SRV, WAN_SRV, RouterLab,
                            client_profile, server_config)
from lab.tools import REPO

LAN_HOST = "198.18.50.10"
SERVER_EXTRA = "explicit-exit-notify 1\n"       # the server tells the appliance when it stops


def probe(queries: list[tuple[str, int, bool]], server: str, timeout: float = 5.0) -> list[dict]:
    """Run on the LAN host: each (name, qtype, tcp) asked of `server`; rcode, addresses, seconds."""
    import random
    import socket
    import struct

    from appliance.lan.dns_wire import encode_query

    def rrs(msg: bytes) -> list[str]:
        an = struct.unpack_from("!H", msg, 6)[0]
        pos = 12
        while msg[pos]:
            pos += msg[pos] + 1
        pos += 5
        out = []
        for _ in range(an):
            while msg[pos] and msg[pos] & 0xC0 != 0xC0:
                pos += msg[pos] + 1
            pos += 2 if msg[pos] else 1
            rtype, _c, _t, ln = struct.unpack_from("!HHIH", msg, pos)
            pos += 10
            if rtype in (1, 28):
                out.append(socket.inet_ntop(socket.AF_INET if rtype == 1 else socket.AF_INET6, msg[pos:pos + ln]))
            pos += ln
        return out

    results = []
    for name, qtype, tcp in queries:
        mid = random.randrange(65536)
        q = encode_query(mid, name, qtype)
        t0 = time.monotonic()
        try:
            if tcp:
                with socket.create_connection((server, 53), timeout=timeout) as s:
                    s.sendall(struct.pack("!H", len(q)) + q)
                    buf = b""
                    while len(buf) < 2 or len(buf) < 2 + struct.unpack_from("!H", buf)[0]:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise ConnectionError("closed")
                        buf += chunk
                    msg = buf[2:]
            else:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(timeout)
                    s.sendto(q, (server, 53))
                    msg = s.recv(4096)
            assert struct.unpack_from("!H", msg)[0] == mid
            results.append({"rcode": msg[3] & 15, "addrs": rrs(msg), "s": time.monotonic() - t0})
        except (OSError, ConnectionError) as e:
            results.append({"rcode": None, "error": str(e), "s": time.monotonic() - t0})
    return results


def ask(lab: RouterLab, queries: list[tuple[str, int, bool]], timeout: float = 5.0, ns=None) -> list[dict]:
    code = (f"import sys, json; sys.path.insert(0, {str(REPO)!r}); from tests.interop.test_lan_dns import probe; "
            f"print(json.dumps(probe({queries!r}, {LAN_APP!r}, {timeout!r})))")
    r = subprocess.run(["ip", "netns", "exec", (ns or lab.lan).name, sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=60 + timeout * len(queries))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def watch_wan_dns(lab: RouterLab) -> None:
    """Our own counter in the appliance's namespace, ahead of the kill switch: DNS the appliance
    tries to send out of the WAN (the kill switch would drop it, so a capture could not see it)."""
    lab.app.run("nft -f - <<'EOF'\ntable inet dnsprobe {\n chain out {\n  type filter hook output priority -10;"
                f" policy accept;\n  oifname \"{lab.wan_if}\" meta l4proto {{ udp, tcp }} th dport 53 counter\n }}\n}}\nEOF")


def wan_dns_attempts(lab: RouterLab) -> int:
    r = lab.app.run("nft list chain inet dnsprobe out")
    m = re.search(r"counter packets (\d+)", r.stdout)
    assert m, r.stdout
    return int(m.group(1))


# Names the VPN's dnsmasq answers with addresses a LAN host must not be given (DNS rebinding): a
# LAN host's address, loopback behind a CNAME, the appliance's own tunnel address, ::1; and an
# intranet name with a 10.x address, which must pass.
INTRANET, INTRANET_ADDR = "intranet.vpn.test", "10.20.30.40"
REBIND_NAMES = (f"--address=/rebind.evil.test/{LAN_HOST}", "--address=/rebind.evil.test/::1",
                "--host-record=loop.evil.test,127.0.0.1", "--cname=alias.evil.test,loop.evil.test",
                "--address=/own.evil.test/198.19.0.2", f"--address=/{INTRANET}/{INTRANET_ADDR}")
ALL = [(SECRET_NAME, 1, False), (SECRET_NAME, 28, False), (SECRET_NAME, 1, True), (SECRET_NAME, 28, True)]


class Lab:
    def __init__(self, lab: RouterLab) -> None:
        self.lab = lab
        self.server = None
        self.appliance = None
        self.dnsmasq = None

    def restart(self, push: str) -> None:
        """The OpenVPN server pushing DNS in form `push`, and a fresh appliance connected to it."""
        lab = self.lab
        for p in (self.appliance, self.server):
            if p is not None:
                p.stop(10)
        self.server = lab.openvpn_server(self.server_config(push))
        if self.dnsmasq is None:
            self.dnsmasq = lab.dns_server(extra=REBIND_NAMES)
        self.appliance = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), wait=60,
                                       pattern="DNS forwarder: LAN queries go to")

    def server_config(self, push: str) -> str:
        if push == "dns":       # 2.6 form, one server entry with an IPv4 and an IPv6 address
            return server_config(self.lab.pki, push_dns=True, dns_form="dns", extra=SERVER_EXTRA)
        # dhcp-option form: first a server that only the WAN would reach in clear, then IPv4 and IPv6
        return server_config(self.lab.pki, push_dns=False, extra=SERVER_EXTRA + f'push "dhcp-option DNS {WAN_SRV}"\n'
                             f'push "dhcp-option DNS {TUN_SRV}"\npush "dhcp-option DNS6 {TUN6_SRV}"\n')

    def queries_from(self, after: int = 0) -> set[str]:
        """Source addresses dnsmasq logged for queries of the secret name (log from offset `after`)."""
        return set(re.findall(rf"query\[\w+\] {re.escape(SECRET_NAME)} from (\S+)", self.dnsmasq.log()[after:]))


@pytest.fixture(scope="module")
def dns_lab():
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add {LAN_HOST}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        watch_wan_dns(lab)
        cap = lab.capture("dns")
        lab_ = Lab(lab)
        lab_.capture = cap
        yield lab_


def assert_resolves(results: list[dict]) -> None:
    for (name, qtype, tcp), r in zip(ALL * (len(results) // len(ALL) or 1), results, strict=True):
        assert r["rcode"] == 0, (name, qtype, "tcp" if tcp else "udp", r)
        assert r["addrs"] == [BEHIND if qtype == 1 else BEHIND6], r


@pytest.mark.parametrize("push", ["dhcp-option", "dns"])
def test_lan_host_resolves_the_vpn_name_over_udp_and_tcp(dns_lab, push):
    dns_lab.restart(push)
    before = wan_dns_attempts(dns_lab.lab)
    mark = len(dns_lab.dnsmasq.log())
    assert_resolves(ask(dns_lab.lab, ALL * 2))   # new queries start at the pushed servers in turn
    seen = dns_lab.queries_from(mark)
    tunnel_v4 = "198.19.0.2"
    assert tunnel_v4 in seen and any(a.startswith("2001:db8:19::") for a in seen), seen
    assert wan_dns_attempts(dns_lab.lab) == before == 0, "the forwarder tried to send on the WAN"
    # a stock client too (busybox nslookup, UDP)
    r = dns_lab.lab.lan.run(f"busybox nslookup {SECRET_NAME} {LAN_APP}", check=False)
    assert BEHIND in r.stdout, r.stdout + r.stderr


def test_lan_names_and_addresses_are_answered_here_not_asked_of_the_vpn(dns_lab):
    """A single-label name and the reverse lookup of a LAN address are answered NXDOMAIN by the
    appliance and never reach the VPN's DNS server (dnsmasq logs every query it gets); the
    reverse lookup of the VPN's tunnel server does reach it."""
    if dns_lab.appliance is None:
        dns_lab.restart("dhcp-option")
    mark = len(dns_lab.dnsmasq.log())
    lan_ptr = ipaddress.ip_address(LAN_HOST).reverse_pointer
    vpn_ptr = ipaddress.ip_address(TUN_SRV).reverse_pointer
    got = ask(dns_lab.lab, [("printer", 1, False), ("printer", 28, True), (lan_ptr, 12, False),
                            ("b._dns-sd._udp.0.50.18.198.in-addr.arpa", 12, False), (vpn_ptr, 12, False),
                            (SECRET_NAME, 1, False)])
    assert [r["rcode"] for r in got[:4]] == [3, 3, 3, 3], got
    assert got[5]["rcode"] == 0 and got[5]["addrs"] == [BEHIND], got
    log = dns_lab.dnsmasq.log()[mark:]
    assert f"query[PTR] {vpn_ptr}" in log, log[-2000:]
    assert "printer" not in log and "50.18.198.in-addr.arpa" not in log, log[-2000:]


def test_answers_pointing_into_the_lan_are_stripped_and_intranet_ones_pass(dns_lab):
    """DNS rebinding: the VPN's dnsmasq answers names with the LAN host's address, ::1, a CNAME to
    127.0.0.1 and the appliance's tunnel address; the LAN host gets NOERROR with no address for
    each (over UDP and TCP), though dnsmasq was asked (the block is ours); the intranet name's
    10.x address and the VPN's own name pass; the appliance logs the block."""
    if dns_lab.appliance is None:
        dns_lab.restart("dhcp-option")
    mark = len(dns_lab.dnsmasq.log())
    blocked = [("rebind.evil.test", 1, False), ("rebind.evil.test", 28, True), ("alias.evil.test", 1, False),
               ("alias.evil.test", 1, True), ("own.evil.test", 1, False)]
    got = ask(dns_lab.lab, [*blocked, (INTRANET, 1, False), (INTRANET, 1, True), (SECRET_NAME, 1, False)])
    for q, r in zip(blocked, got, strict=False):
        assert r["rcode"] == 0 and r["addrs"] == [], (q, r)
    assert [r["addrs"] for r in got[5:]] == [[INTRANET_ADDR], [INTRANET_ADDR], [BEHIND]], got
    log = dns_lab.dnsmasq.log()[mark:]
    assert "query[A] rebind.evil.test" in log and "query[AAAA] rebind.evil.test" in log, log[-2000:]
    assert "query[A] alias.evil.test" in log and "query[A] own.evil.test" in log, log[-2000:]
    assert dns_lab.appliance.wait_for("possible DNS rebinding", 10), dns_lab.appliance.log()[-3000:]


def test_servfail_at_once_while_the_tunnel_is_down_then_recovery(dns_lab):
    if dns_lab.appliance is None:
        dns_lab.restart("dns")
    app = dns_lab.appliance
    down = "DNS forwarder: answering SERVFAIL (tunnel down)"
    n = app.log().count(down)
    dns_lab.server.stop(10)
    assert app.wait_count(down, n + 1, 30), app.log()[-3000:]
    for r in ask(dns_lab.lab, ALL, timeout=3):
        assert r["rcode"] == 2 and r["s"] < 1.0, r
    # the server comes back: the appliance reconnects and names resolve again
    dns_lab.server = dns_lab.lab.openvpn_server(dns_lab.server_config("dns"))
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if ask(dns_lab.lab, ALL[:1], timeout=2)[0]["rcode"] == 0:
            break
        time.sleep(0.5)
    assert_resolves(ask(dns_lab.lab, ALL))


def test_no_cleartext_dns_on_the_wan_throughout(dns_lab):
    pcap = dns_lab.lab.stop_capture(dns_lab.capture)
    assert pcap.stat().st_size > 0
    assert dns_lab.lab.wan_leaks(pcap) == []


def test_not_served_to_the_wan(dns_lab):
    """A WAN host that routes to the LAN address gets no answer (after the capture: this query is
    on the WAN on purpose)."""
    lab = dns_lab.lab
    lab.wan.run(f"ip route add {LAN_APP}/32 via 198.18.0.2")
    for r in ask(lab, [ALL[0], ALL[2]], timeout=2, ns=lab.wan):
        assert r["rcode"] is None, r                      # refused or timed out, never answered
    assert ask(lab, ALL[:1])[0]["rcode"] == 0             # the LAN still is
