"""The LAN's DHCP server on a NIC whose MTU is below 1500: ISC dhclient, saying it takes 1500-byte
messages (`send dhcp-max-message-size 1500`, as dhcpcd and systemd-networkd send their own NIC's
MTU), gets a lease whose reply fits the server NIC's MTU -- not one sent in IP fragments, which
dhclient's packet filter drops (no lease at all) -- and on a 1500 NIC the whole search list.

Small: two namespaces of our own joined by a veth (the server's end at MTU 576, 1280, 1500; the
client's at 1500), the appliance's DhcpService alone on a pump in one (no tunnel: a search list
set as if pushed), dhclient in the other. The frames are captured on the client's side: every
reply must be one whole IP datagram no larger than the server's MTU."""
from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.netns import Netns, Proc
from lab.tools import REPO

pytestmark = [pytest.mark.root, pytest.mark.netns]

DHCLIENT = shutil.which("dhclient") or "/sbin/dhclient"
SERVER_IP, FIRST, LAST = "198.18.34.1", "198.18.34.100", "198.18.34.199"
# 15 search domains, no shared suffixes: option 119 is 1,125 bytes -- it fits a 1500 MTU only
NAMES = [f"d{i:02d}" + "x" * 60 + f".example{i:02d}" for i in range(15)]

SERVER = """
import logging, sys, time
sys.path.insert(0, sys.argv[1])
from ipaddress import IPv4Address, IPv4Interface
from appliance.gateway.loop import Pump, SelectorWaiter
from appliance.lan.dhcp_server import DhcpServer, DhcpService
from appliance.openvpn.keymethod import PushedOptions
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
srv = DhcpServer(IPv4Interface(sys.argv[3] + "/24"), IPv4Address(sys.argv[4]), IPv4Address(sys.argv[5]), 600)
p = PushedOptions()
p.dhcp_options = [("DOMAIN", "vpn.test")] + [("DOMAIN-SEARCH", n) for n in sys.argv[6].split(",")]
srv.set_pushed(p)
svc = DhcpService(srv, sys.argv[2])
pump = Pump(time.monotonic, SelectorWaiter())
svc.attach(pump, lambda: None)
print("serving", flush=True)
pump.run(lambda: False)
"""

SCRIPT = """#!/bin/sh
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    env | grep -E '^(reason|new_[a-z_]+)=' > "$0.out.tmp"
    mv "$0.out.tmp" "$0.out" ;;
esac
exit 0
"""
CONF = ("send dhcp-max-message-size 1500;\nrequest subnet-mask, routers, domain-name, domain-name-servers, "
        "domain-search, dhcp-lease-time;\ntimeout 12;\nretry 1;\n")


class Pair:
    """Two namespaces of ours and a veth between them."""

    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.tmp = tmp
        self.procs: list[Proc] = []
        self.srv = Netns(f"lan34s{tag}")
        try:
            self.cli = Netns(f"lan34c{tag}")
            self.sif, self.cif = f"l34s{tag}", f"l34c{tag}"
            subprocess.run(["ip", "link", "add", self.sif, "netns", self.srv.name, "type", "veth", "peer", "name",
                            self.cif, "netns", self.cli.name], check=True)
            self.srv.run(f"ip addr add {SERVER_IP}/24 dev {self.sif} && ip link set {self.sif} up")
            self.cli.run(f"ip link set {self.cif} up")
        except BaseException:
            self.close()
            raise

    def start(self, ns: Netns, argv: list[str], name: str) -> Proc:
        p = Proc(ns, argv, self.tmp / f"{name}.log")
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        for ns in (getattr(self, "cli", None), self.srv):
            if ns is not None:
                ns.delete()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("lan34"))
    yield p
    p.close()


def lease(pair: Pair, mtu: int, repo: Path = REPO) -> tuple[dict[str, str], list[int]]:
    """The server NIC at `mtu`, our server on it, one dhclient run: its lease (empty: none) and the
    sizes of the IP datagrams the server sent (fragments counted as what they are)."""
    pair.srv.run(f"ip link set {pair.sif} mtu {mtu}")
    pair.cli.run(f"ip addr flush dev {pair.cif}")
    code = pair.tmp / "server.py"
    code.write_text(SERVER)
    server = pair.start(pair.srv, [sys.executable, str(code), str(repo), pair.sif, SERVER_IP, FIRST, LAST,
                                   ",".join(NAMES)], f"server{mtu}")
    pcap = pair.tmp / f"c{mtu}.pcap"
    cap = pair.start(pair.cli, ["tcpdump", "-i", pair.cif, "-n", "-U", "--immediate-mode", "-w", str(pcap), "ip src", SERVER_IP],
                     f"tcpdump{mtu}")
    try:
        assert server.wait_for("serving", 20), server.log()
        time.sleep(1.0)                                # tcpdump listening (its start is not logged to us)
        script = pair.tmp / f"dhclient{mtu}.sh"
        script.write_text(SCRIPT)
        script.chmod(0o755)
        Path(f"{script}.out").unlink(missing_ok=True)
        conf = pair.tmp / "dhclient.conf"
        conf.write_text(CONF)
        leases = pair.tmp / f"dhclient{mtu}.leases"
        pair.cli.run(f"{DHCLIENT} -1 -v -cf {conf} -sf {script} -lf {leases} -pf {pair.tmp}/dhclient{mtu}.pid "
                     f"{pair.cif}", check=False, timeout=40)
        pair.cli.run(f"kill $(cat {pair.tmp}/dhclient{mtu}.pid) 2>/dev/null", check=False)
        out = Path(f"{script}.out")
        got = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line) if out.exists() else {}
    finally:
        time.sleep(1.0)                                # the last frames written
        cap.stop()
        server.stop()
    r = subprocess.run(["tcpdump", "-r", str(pcap), "-n", "-v", "udp or ip[6:2] & 0x3fff != 0"],
                       capture_output=True, text=True)
    sizes = [int(x) for x in re.findall(r"length (\d+)\)", r.stdout)]
    if "flags [+]" in r.stdout or re.search(r"offset [1-9]", r.stdout):
        sizes.append(-1)                               # a fragment: -1 says so
    return got, sizes


@pytest.mark.parametrize("mtu", [576, 1280])
def test_a_lease_on_a_small_mtu_nic_whatever_size_the_client_takes(pair, mtu):
    got, sizes = lease(pair, mtu)
    assert got.get("new_ip_address", "").startswith("198.18.34."), (got, sizes)
    assert got.get("new_domain_name") == "vpn.test" and got.get("new_routers") == SERVER_IP, got
    assert sizes and max(sizes) <= mtu and -1 not in sizes, sizes    # whole IP datagrams within the MTU
    assert "new_domain_search" not in got                  # ~1,330 bytes: left out, as it does not fit


def test_the_whole_search_list_on_a_1500_nic(pair):
    got, sizes = lease(pair, 1500)
    assert got.get("new_ip_address", "").startswith("198.18.34."), (got, sizes)
    assert got.get("new_domain_search", "").replace("'", "").split() == [f"{n}." for n in NAMES], got
    assert sizes and max(sizes) > 1280 and -1 not in sizes, sizes
