"""The WAN DHCP client (appliance/boot/dhcp_client.py) against Debian's dnsmasq, in two
namespaces joined by a veth (one pair and one dnsmasq for the module):

- an orderly stop (the undo's `Lease.stop`) sends a DHCPRELEASE, unicast to the server with
  ciaddr and the server id (RFC 2131 4.4.6; dhclient -r and systemd-networkd's SendRelease=yes
  do): dnsmasq logs it and its lease file no longer holds the address. Before, the lease stayed
  taken at the server until it ran out (a router VM rebooted with a new MAC could not get it
  back). Even with the server's ARP entry gone (the datagram waits for ARP while the stop
  removes the address). Without a route to the server the release is skipped, the stop quick;
- a NIC back without its address (`ip link set down`, `ip addr flush`, `ip link set up`: a
  driver reset, a hypervisor's NIC reconnect) has the lease's address and default route again
  within seconds (the link event), not at T1 (half the lease); a down/up that only took the
  routes gets the default route back.
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

import pytest

from lab.netns import Netns, Proc

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER, GOOD = "198.18.62.1", "198.18.62.10"

# Boot with a lease (T1 far off: nothing here is the renewal's doing), print it, then stop the
# lease (as the undo at shutdown does) once the file argv[2] appears; bounded by time.
CLIENT = r"""
import logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client as dc
dev, stop_file = sys.argv[1], sys.argv[2]
lease = dc.dhcp_configure(dev, policy=dc.Policy(reply_wait=1.0, pause_first=0.5, pause_max=1.0))
print("BOOT", lease.address, lease.server, flush=True)
end = time.monotonic() + 60
while not os.path.exists(stop_file) and time.monotonic() < end:
    time.sleep(0.05)
t = time.monotonic()
lease.stop()
print(f"STOPPED in {time.monotonic() - t:.3f} s", flush=True)
"""


class World:
    def __init__(self, tmp: Path) -> None:
        tag = secrets.token_hex(3)
        self.tmp = tmp
        self.srv, self.cli = Netns(f"w38s{tag}"), Netns(f"w38c{tag}")
        self.sdev, self.cdev = f"ws{tag}", f"wc{tag}"
        self.procs: list[Proc] = []
        self.runs = 0
        self.srv.run(f"ip link add {self.sdev} type veth peer name {self.cdev} netns {self.cli.name}")
        self.srv.run(f"ip addr add {SERVER}/24 dev {self.sdev} && ip link set {self.sdev} up")
        self.cli.run(f"ip link set {self.cdev} up")
        self.leases = tmp / "leases"
        self.dnsmasq = self._proc(self.srv, [
            shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--port=0", "--bind-interfaces", f"--interface={self.sdev}",
            "--except-interface=lo", "--no-ping", "--pid-file=", "--user=root", "--log-dhcp", "--log-facility=-",
            f"--dhcp-range={GOOD},{GOOD},255.255.255.0,1h", f"--dhcp-option=option:router,{SERVER}",
            f"--dhcp-leasefile={self.leases}"], "dnsmasq")
        assert self.dnsmasq.wait_for("DHCP, IP range", 10), self.dnsmasq.log()

    def _proc(self, ns: Netns, argv: list[str], name: str) -> Proc:
        p = Proc(ns, argv, self.tmp / f"{name}.log")
        self.procs.append(p)
        return p

    def client(self) -> tuple[Proc, Path]:
        self.runs += 1
        stop = self.tmp / f"stop{self.runs}"
        p = self._proc(self.cli, [sys.executable, "-c", CLIENT, self.cdev, str(stop)], f"client{self.runs}")
        assert p.wait_for(r"BOOT \d", 20), p.log()
        return p, stop

    def v4(self) -> list[str]:
        out = json.loads(self.cli.run(f"ip -j addr show dev {self.cdev}").stdout)
        return [f"{a['local']}/{a['prefixlen']}" for a in out[0].get("addr_info", []) if a["family"] == "inet"]

    def default_route(self) -> str:
        return self.cli.run("ip -4 route show default").stdout.strip()

    def leased(self) -> bool:
        return self.leases.exists() and GOOD in self.leases.read_text()

    def close(self) -> None:
        for p in self.procs:
            p.stop()
        self.cli.delete()
        self.srv.delete()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("wan38"))
    try:
        yield w
    finally:
        w.close()


def _stopped(p: Proc, stop: Path) -> float:
    stop.touch()
    assert p.wait_for(r"STOPPED in", 20), p.log()
    assert p.exit_within(10) == 0, p.log()
    return float(re.search(r"STOPPED in ([\d.]+) s", p.log()).group(1))


def test_an_orderly_stop_releases_the_lease_at_the_server(world):
    p, stop = world.client()
    assert world.leased() and world.v4() == [f"{GOOD}/24"]
    n = world.dnsmasq.log().count("DHCPRELEASE(")
    world.cli.run(f"ip neigh flush dev {world.cdev}")          # the server's MAC unknown: the release waits for ARP
    took = _stopped(p, stop)
    assert world.dnsmasq.wait_count("DHCPRELEASE(", n + 1, 10), world.dnsmasq.log()
    line = [x for x in world.dnsmasq.log().splitlines() if "DHCPRELEASE(" in x][-1]
    assert GOOD in line and "unknown lease" not in line, line
    end = time.monotonic() + 10
    while world.leased() and time.monotonic() < end:
        time.sleep(0.1)
    assert not world.leased(), world.leases.read_text()
    assert world.v4() == [] and world.default_route() == ""
    assert f"DHCP lease of {GOOD} released (DHCPRELEASE to {SERVER})" in p.log()
    assert took < 5, took                       # bounded by RELEASE_WAIT (0.4 s); wide margin for a loaded machine


def test_no_route_to_the_server_skips_the_release(world):
    p, stop = world.client()
    assert world.leased()
    n = world.dnsmasq.log().count("DHCPRELEASE(")
    world.cli.run(f"ip route flush dev {world.cdev}")             # neither the prefix route nor the default
    _stopped(p, stop)
    assert "no DHCPRELEASE of" in p.log() and "no route to the server" in p.log(), p.log()
    assert world.v4() == []
    time.sleep(1)
    assert world.dnsmasq.log().count("DHCPRELEASE(") == n and world.leased()


def _back(world, within: float = 15) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if world.v4() == [f"{GOOD}/24"] and f"default via {SERVER}" in world.default_route():
            return True
        time.sleep(0.1)
    return False


def test_a_nic_back_without_its_address_gets_it_again_within_seconds(world):
    p, stop = world.client()
    assert _back(world, 1)
    world.cli.run(f"ip link set {world.cdev} down && ip addr flush dev {world.cdev}")
    time.sleep(1.5)
    assert world.v4() == []                       # not while the link is down: the operator's to decide
    world.cli.run(f"ip link set {world.cdev} up")
    assert _back(world), (world.v4(), world.default_route(), p.log())
    # The route is added before the line is logged (dhcp_client.reapply): wait for the line too.
    assert p.wait_for(r"was gone from the NIC \(link down/up, flushed\): added again", 15), p.log()
    # A down/up that takes only the routes (the kernel drops a down NIC's IPv4 routes).
    world.cli.run(f"ip link set {world.cdev} down && ip link set {world.cdev} up")
    assert _back(world), (world.v4(), world.default_route(), p.log())
    # Said up to NoteLimit.BURST times at once, then once per 30 s (logpace.py: a flapping link
    # is not a line per flap): this second repair is said.
    assert p.wait_for(r"(?s)was gone from the NIC.*was gone from the NIC", 15), p.log()
    # The address flushed while the link stays up.
    world.cli.run(f"ip addr flush dev {world.cdev}")
    assert _back(world), (world.v4(), world.default_route(), p.log())
    _stopped(p, stop)
    assert world.v4() == []
