"""The appliance VM as a router, booted from the real image with the embedded default config.

    [lan ns]  198.18.50.2 ─┐
    [lan2 ns] (unconfigured)┴ br ── tap ─ eth1 [VM 198.18.50.1 | eth0 198.18.0.2] tap ── br ── 198.18.0.1 [srv ns]
                       OpenVPN 2.6 server (IPv6 pool, pushes DNS), dnsmasq, host 198.18.100.1 / 2001:db8:100::1

A LAN host reaches the host behind the VPN server through the tunnel (NAT: the server side sees the
tunnel address). An unconfigured LAN host with stock clients (busybox udhcpc, the kernel's SLAAC)
gets its IPv4 and IPv6 addresses, gateway and DNS from the VM, resolves a name only the VPN side's
DNS knows, and downloads a file from behind the VPN over IPv4 and IPv6 (issue 9's "done when").
A capture on the WAN from before power-on until the end of the outage test holds no cleartext DNS
and no LAN packet: with the tunnel up, while the VPN server is gone, and while it comes back. With
the VPN server gone for good, nothing from the LAN leaves in clear.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
import sys
import time

import pytest

from lab.netns import Netns, Proc
from lab.router_lab import (BEHIND, BEHIND6, LAN6_NET, SECRET_NAME, WEB_PORT, RouterLab, server_config,
                            start_far_side)
from lab.vm import OUT, accel, boot, lab_pki, lan_transfer, vm_topology
from tests.interop.test_lan_dhcp import Host
from tests.vm.conftest import FIGURES
from tests.vm.test_image import build
from lab.vm import ping as _ping


class _Deleted:
    """A namespace removed on the topology's way out (its list of things to stop)."""

    def __init__(self, ns: Netns) -> None:
        self.ns = ns

    def stop(self, timeout: float = 5.0) -> None:
        self.ns.delete()


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    build(OUT)   # the default image (embedded default config), reused when current
    tmp = tmp_path_factory.mktemp("router")
    with vm_topology(tmp) as t:
        def start(ns: Netns, argv: list[str], name: str) -> Proc:
            p = Proc(ns, argv, tmp / f"{name}-{len(t['procs'])}.log")
            t["procs"].append(p)
            return p
        # explicit-exit-notify: a stopped server tells the VM at once (the outage test's "down").
        far = start_far_side(t["wan"], tmp, start, lab_pki(), extra="explicit-exit-notify 1\n")
        # An unconfigured LAN host on the same LAN bridge, SLAAC on (as a stock Linux host).
        lan2 = Netns(f"vml2{t['tag']}")
        t["procs"].append(_Deleted(lan2))      # removed with the topology's processes
        subprocess.run(["ip", "link", "add", f"vl3{t['tag']}", "netns", t["vm"].name, "type", "veth", "peer",
                        "name", "eth0", "netns", lan2.name], check=True)
        t["vm"].run(f"ip link set vl3{t['tag']} master brl up")
        lan2.run("sysctl -qw net.ipv6.conf.eth0.accept_ra=1 net.ipv6.conf.eth0.autoconf=1 && ip link set eth0 up")
        cap = start(t["wan"], ["tcpdump", "-i", t["wan_if"], "-n", "-U", "-w", str(tmp / "wan.pcap")], "tcpdump")
        cap.pcap = tmp / "wan.pcap"
        assert cap.wait_for("listening on", 60), cap.log()
        t0 = time.monotonic()
        qemu = boot(t, OUT)
        assert qemu.wait_for("tunnel up", 150), "appliance did not bring the tunnel up:\n" + qemu.log()[-4000:]
        FIGURES.append(f"boot to tunnel up (router, UDP) under {accel(OUT)}: {time.monotonic() - t0:.1f} s")
        yield {**t, "srv": t["wan"], "ovpn": far["ovpn"], "far": far, "qemu": qemu, "start": start,
               "lan2": Host(lan2, "eth0", "lan2", tmp), "capture": cap}


def test_lan_host_reaches_the_far_side_through_the_tunnel_with_nat(topo):
    lan, srv = topo["lan"], topo["srv"]
    assert _ping(lan, "198.18.100.1", 3) >= 2, topo["qemu"].log()[-3000:]
    # A TCP transfer from the LAN host: the server side sees the tunnel address (NAT).
    peer = lan_transfer(lan, srv, topo["tmp"])
    assert re.match(r"198\.19\.0\.\d+$", peer), peer
    # And a download: the appliance writes merged (GSO) segments into its TUN, which the kernel
    # de-NATs and forwards out of the LAN NIC.
    peer = lan_transfer(lan, srv, topo["tmp"], download=True)
    assert re.match(r"198\.19\.0\.\d+$", peer), peer


def _fetch(ns: Netns, url: str) -> str:
    """SHA-256 of the file at `url`, fetched from the namespace with Python's urllib ("" if not)."""
    code = ("import hashlib,urllib.request\n"
            f"print(hashlib.sha256(urllib.request.urlopen({url!r}, timeout=20).read()).hexdigest())")
    r = ns.run(f"{sys.executable} -c {shlex.quote(code)}", check=False, timeout=60)
    return r.stdout.strip() or r.stderr[-500:]


def _lookup(ns: Netns, server: str) -> str:
    r = ns.run(f"busybox nslookup {SECRET_NAME} {server}", check=False, timeout=30)
    return r.stdout + r.stderr


def _slaac_address(ns: Netns, within: float = 30) -> str | None:
    """The LAN host's address in the LAN's IPv6 prefix, once SLAAC has made one from the VM's RA."""
    net = ipaddress.ip_network(LAN6_NET)
    end = time.monotonic() + within
    while time.monotonic() < end:
        out = ns.run("ip -6 -o addr show dev eth0 scope global", check=False).stdout
        for m in re.finditer(r"inet6 ([0-9a-f:]+)/\d+", out):
            if ipaddress.ip_address(m.group(1)) in net and "tentative" not in out:
                return m.group(1)
        time.sleep(0.5)
    return None


def test_unconfigured_lan_host_gets_addresses_dns_and_the_far_side_over_ipv4_and_ipv6(topo):
    host, lan2 = topo["lan2"], topo["lan2"].ns
    lease = host.udhcpc()                                  # busybox udhcpc, as Debian ships it
    got = ipaddress.ip_address(lease["ip"])
    assert ipaddress.ip_address("198.18.50.100") <= got <= ipaddress.ip_address("198.18.50.199"), lease
    assert lease.get("router") == "198.18.50.1" and lease.get("dns") == "198.18.50.1", lease
    assert lease.get("domain") == "vpn.test", "the pushed DOMAIN reaches the LAN (option 15)"
    answer = _lookup(lan2, lease["dns"])
    assert BEHIND in answer, "the VPN-only name did not resolve through the VM's DNS forwarder:\n" + answer
    assert _fetch(lan2, f"http://{BEHIND}:{WEB_PORT}/file") == topo["far"]["digest"]
    addr6 = _slaac_address(lan2)
    assert addr6, "no SLAAC address from the VM's router advertisements:\n" + \
        lan2.run("ip -6 addr; ip -6 route", check=False).stdout
    assert BEHIND6 in _lookup(lan2, str(ipaddress.ip_network(LAN6_NET)[1])), "no AAAA over the IPv6 DNS"
    assert _fetch(lan2, f"http://[{BEHIND6}]:{WEB_PORT}/file") == topo["far"]["digest"], \
        "IPv6 download through the tunnel failed:\n" + lan2.run("ip -6 route", check=False).stdout


def test_vpn_server_outage_and_return_servfail_meanwhile_and_no_leak_on_the_wan(topo):
    lan2, qemu, far = topo["lan2"].ns, topo["qemu"], topo["far"]
    ups = qemu.log().count("tunnel up")
    far["ovpn"].stop(10)                                   # explicit-exit-notify: the VM hears it at once
    end = time.monotonic() + 40
    while time.monotonic() < end and "SERVFAIL" not in (out := _lookup(lan2, "198.18.50.1")):
        time.sleep(1)
    assert "SERVFAIL" in out, "no SERVFAIL from the forwarder while the tunnel is down:\n" + out
    assert _ping(lan2, BEHIND, 2) == 0
    lan2.run(f"ping -6 -c 2 -W 1 {BEHIND6}", check=False, timeout=20)     # probes the capture must not see
    ovpn = topo["start"](topo["srv"], ["openvpn", "--config", str(far["config"])], "openvpn-server-again")
    assert ovpn.wait_for("Initialization Sequence Completed", 30), ovpn.log()
    topo["ovpn"] = ovpn
    assert qemu.wait_count("tunnel up", ups + 1, 120), "the tunnel did not come back:\n" + qemu.log()[-3000:]
    end = time.monotonic() + 30
    while time.monotonic() < end and BEHIND not in (out := _lookup(lan2, "198.18.50.1")):
        time.sleep(1)
    assert BEHIND in out, "names do not resolve again after the tunnel came back:\n" + out
    assert _fetch(lan2, f"http://[{BEHIND6}]:{WEB_PORT}/file") == far["digest"]
    pcap = RouterLab.stop_capture(topo["capture"])
    leaks = RouterLab.wan_leaks(pcap)
    assert not leaks, "cleartext DNS or LAN packets on the WAN:\n" + "\n".join(leaks[:10])


def test_kill_switch_no_lan_packet_leaves_in_clear(topo):
    lan, srv = topo["lan"], topo["srv"]
    topo["ovpn"].stop(10)          # the VPN server is gone: the tunnel is down
    cap = Proc(srv, ["tcpdump", "-n", "-l", "-i", topo["wan_if"], "net 198.18.50.0/24 or icmp or port 7000"],
               topo["tmp"] / "cap.log")
    try:
        time.sleep(1.5)
        for addr in ("198.18.0.1", "198.18.100.1"):
            assert _ping(lan, addr, 3) == 0
        lan.run(f"{sys.executable} -c \"import socket\ntry: socket.create_connection(('198.18.0.1',22),timeout=2)\n"
                f"except OSError: pass\"", check=False, timeout=20)
        time.sleep(1)
    finally:
        cap.stop(3)
    # A LAN packet in clear would carry a LAN source (routed) or, masqueraded, be an echo request or
    # a connection attempt from the appliance's WAN address. (The server's own ICMP port-unreachable
    # answers to the appliance's VPN retries are not LAN traffic.)
    leaked = [ln for ln in cap.log().splitlines()
              if "198.18.50." in ln or "echo request" in ln or "> 198.18.0.1.22:" in ln]
    assert not leaked, "LAN traffic left the WAN in clear:\n" + "\n".join(leaked[:10])
