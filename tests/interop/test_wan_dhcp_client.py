"""The WAN's DHCP client (appliance/boot/dhcp_client.py, PID 1's in the VM) against a hostile
DHCP server on the WAN segment, in two namespaces joined by a veth.

- A rogue server that answers every DISCOVER first, with an offer the client cannot apply (a
  non-contiguous netmask), and NAKs every REQUEST it did not offer in the real server's name
  (option 54 copied), racing the real server: the client drops the rogue's offer (counted,
  logged), waits past the NAK for the ACK and takes the real lease. Before, it took the first
  offer and raised on the netmask (at boot: PID 1 powers the VM off), or gave up on the NAKs.
- A renewal that gets the same lease leaves the WAN as it is: before, it flushed every address
  of the NIC and added the new one back, and the kernel dropped every route through the NIC with
  its last address -- the tunnel's host route to the VPN server too -- and the IPv6 addresses went
  with the flush (at boot too: the link-local address the NIC had just made).
- A renewal while the lease holds takes only the lease's own address: a rogue that offers (and
  ACKs) another usable address faster than the real server at renewal time is dropped. Before,
  the renewal was a plain DISCOVER that took the first usable offer, and the rogue moved the WAN
  to its address and router at every renewal, the tunnel's host route to the VPN server gone.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time

import pytest

from lab.netns import Netns

pytestmark = [pytest.mark.root, pytest.mark.netns]

SERVER, ROGUE = "198.18.60.1", "198.18.60.2"
GOOD, BAD = "198.18.60.10", "198.18.60.66"
VPN_SERVER = "198.18.77.7"          # "the VPN server": the tunnel's host route goes via the WAN router

# Two DHCP servers in one process (one socket: both answer from the server namespace's address;
# the client tells them apart by option 54, as on a real segment). Bounded by time and count.
SERVERS = r"""
import socket, struct, sys, time
dev, good, bad, server, rogue = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.bind(("0.0.0.0", 67))
s.settimeout(1.0)
print("listening", flush=True)
def reply(req, kind, yiaddr, sid, mask, router):
    out = bytearray(req[:240])
    out[0] = 2
    out[16:20] = socket.inet_aton(yiaddr)
    opts = bytes([53, 1, kind, 54, 4]) + socket.inet_aton(sid)
    if kind != 6:
        opts += bytes([1, 4]) + socket.inet_aton(mask) + bytes([3, 4]) + socket.inet_aton(router)
        opts += bytes([51, 4]) + struct.pack("!I", 600)
    s.sendto(bytes(out) + opts + b"\xff", ("255.255.255.255", 68))
def option(req, code):
    i = 240
    while i + 1 < len(req) and req[i] != 255:
        if req[i] == 0:
            i += 1
            continue
        if req[i] == code:
            return req[i + 2:i + 2 + req[i + 1]]
        i += 2 + req[i + 1]
    return b""
end = time.monotonic() + 60
for _ in range(200):
    if time.monotonic() > end:
        break
    try:
        req = s.recv(2048)
    except socket.timeout:
        continue
    kind = option(req, 53)
    want = socket.inet_ntoa(option(req, 50)) if len(option(req, 50)) == 4 else ""
    if kind == b"\x01":                     # DISCOVER: the rogue is faster
        reply(req, 2, bad, rogue, "255.0.255.0", rogue)
        reply(req, 2, good, server, "255.255.255.0", server)
    elif kind == b"\x03":                   # REQUEST
        if want == bad:
            reply(req, 5, bad, rogue, "255.0.255.0", rogue)
        else:
            reply(req, 6, "0.0.0.0", server, "", "")        # the rogue NAKs what it did not offer, as the server
            if want == good:
                reply(req, 5, good, server, "255.255.255.0", server)
                print("acked", flush=True)
"""

CLIENT = r"""
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client
lease = dhcp_client.dhcp_configure(sys.argv[1])
lease._stop.set()
print("LEASE", lease.address, lease.prefixlen, lease.router, flush=True)
"""

# The same lease applied again, as the renewal thread does (its wait is half the lease, >= 30 s).
APPLY = r"""
import sys
from appliance.boot import dhcp_client
dev, addr, router = sys.argv[1:4]
dhcp_client._apply(dev, dhcp_client.Offer(addr, 24, router, (), router, 600))
"""


# The real server alone answers the first DISCOVER (the lease at boot); from the second on (the
# renewal) a rogue offers another usable address of the subnet, with itself as router, first.
RENEWAL_SERVERS = r"""
import socket, struct, sys, time
dev, good, other, server, rogue = sys.argv[1:6]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
s.bind(("0.0.0.0", 67))
s.settimeout(1.0)
print("listening", flush=True)
def reply(req, kind, yiaddr, sid, router):
    out = bytearray(req[:240])
    out[0] = 2
    out[16:20] = socket.inet_aton(yiaddr)
    opts = bytes([53, 1, kind, 54, 4]) + socket.inet_aton(sid) + bytes([1, 4, 255, 255, 255, 0, 3, 4])
    opts += socket.inet_aton(router) + bytes([51, 4]) + struct.pack("!I", 600)
    s.sendto(bytes(out) + opts + b"\xff", ("255.255.255.255", 68))
def option(req, code):
    i = 240
    while i + 1 < len(req) and req[i] != 255:
        if req[i] == 0:
            i += 1
            continue
        if req[i] == code:
            return req[i + 2:i + 2 + req[i + 1]]
        i += 2 + req[i + 1]
    return b""
discovers = 0
end = time.monotonic() + 60
for _ in range(200):
    if time.monotonic() > end:
        break
    try:
        req = s.recv(2048)
    except socket.timeout:
        continue
    kind = option(req, 53)
    want = socket.inet_ntoa(option(req, 50)) if len(option(req, 50)) == 4 else ""
    if kind == b"\x01":
        discovers += 1
        if discovers > 1:
            reply(req, 2, other, rogue, rogue)
        reply(req, 2, good, server, server)
    elif kind == b"\x03":
        if want == other:
            reply(req, 5, other, rogue, rogue)
        elif want == good:
            reply(req, 5, good, server, server)
"""

RENEW = r"""
import logging, subprocess, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client
dev, vpn_server = sys.argv[1:3]
lease = dhcp_client.dhcp_configure(dev)
lease._stop.set()
print("BOOT", lease.address, lease.router, flush=True)
subprocess.run(["ip", "route", "add", vpn_server + "/32", "via", lease.router, "dev", dev], check=True)
with open(f"/sys/class/net/{dev}/address") as f:
    mac = bytes.fromhex(f.read().strip().replace(":", ""))
try:
    dhcp_client.renew_once(lease, mac, dhcp_client.Drops(dev), timeout=2.0, tries=2)
except RuntimeError as e:
    print("NO RENEWAL", e, flush=True)
print("RENEWED", lease.address, lease.router, flush=True)
"""


@pytest.fixture
def wan():
    tag = secrets.token_hex(3)
    srv, cli = Netns(f"l15s{tag}"), Netns(f"l15c{tag}")
    try:
        srv.run(f"ip link add vs{tag} type veth peer name vc{tag} netns {cli.name}")
        srv.run(f"ip addr add {SERVER}/24 dev vs{tag} && ip link set vs{tag} up")
        cli.run(f"ip link set vc{tag} up")
        yield srv, cli, f"vs{tag}", f"vc{tag}"
    finally:
        cli.delete()
        srv.delete()


def _addresses(ns: Netns, dev: str) -> list[str]:
    out = json.loads(ns.run(f"ip -j addr show dev {dev}").stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in out[0].get("addr_info", [])]


def test_a_rogue_dhcp_server_neither_stops_the_client_nor_gives_it_its_lease(wan, tmp_path):
    srv, cli, sdev, cdev = wan
    log = tmp_path / "servers.log"
    with open(log, "w") as f:
        servers = subprocess.Popen(["ip", "netns", "exec", srv.name, sys.executable, "-c", SERVERS, sdev, GOOD, BAD,
                                    SERVER, ROGUE], stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        end = time.monotonic() + 20
        while "listening" not in log.read_text() and servers.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        r = cli.run(f"{sys.executable} -c '{CLIENT}' {cdev}", check=False, timeout=60)
    finally:
        servers.kill()
        servers.wait(10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"LEASE {GOOD} 24 {SERVER}" in r.stdout
    assert f"{GOOD}/24" in _addresses(cli, cdev) and not any(a.startswith(BAD) for a in _addresses(cli, cdev))
    assert f"default via {SERVER}" in cli.run("ip -4 route show default").stdout
    assert "DHCP replies dropped" in r.stdout and "bad netmask=" in r.stdout


def test_a_renewal_with_the_same_lease_keeps_the_wan_routes_and_ipv6(wan):
    _srv, cli, _sdev, cdev = wan
    apply = f"{sys.executable} -c '{APPLY}' {cdev}"
    end = time.monotonic() + 10
    while time.monotonic() < end and not any(a.startswith("fe80:") for a in _addresses(cli, cdev)):
        time.sleep(0.05)
    link_local = [a for a in _addresses(cli, cdev) if a.startswith("fe80:")]
    assert link_local, _addresses(cli, cdev)
    cli.run(f"{apply} {GOOD} {SERVER}")                                    # the lease at boot
    assert link_local[0] in _addresses(cli, cdev)                          # the WAN's IPv6 link-local stays
    cli.run(f"ip route add {VPN_SERVER}/32 via {SERVER} dev {cdev}")        # the tunnel's host route
    cli.run(f"ip -6 addr add 2001:db8:60::10/64 dev {cdev} nodad")           # the WAN's static IPv6
    cli.run(f"{apply} {GOOD} {SERVER}")                                    # the renewal: same lease
    assert f"{VPN_SERVER} via {SERVER}" in cli.run(f"ip -4 route show {VPN_SERVER}").stdout
    assert f"default via {SERVER}" in cli.run("ip -4 route show default").stdout
    assert "2001:db8:60::10/64" in _addresses(cli, cdev)
    # A renewal that moves the WAN to another address does replace it (the tunnel reconnects).
    cli.run(f"{apply} 198.18.60.11 {SERVER}")
    v4 = [a for a in _addresses(cli, cdev) if ":" not in a]
    assert v4 == ["198.18.60.11/24"] and "2001:db8:60::10/64" in _addresses(cli, cdev)


def test_a_renewal_while_the_lease_holds_takes_no_other_address(wan, tmp_path):
    srv, cli, sdev, cdev = wan
    other = "198.18.60.66"
    log = tmp_path / "servers.log"
    with open(log, "w") as f:
        servers = subprocess.Popen(["ip", "netns", "exec", srv.name, sys.executable, "-c", RENEWAL_SERVERS, sdev,
                                    GOOD, other, SERVER, ROGUE], stdout=f, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        end = time.monotonic() + 20
        while "listening" not in log.read_text() and servers.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        r = cli.run(f"{sys.executable} -c '{RENEW}' {cdev} {VPN_SERVER}", check=False, timeout=60)
    finally:
        servers.kill()
        servers.wait(10)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"BOOT {GOOD} {SERVER}" in r.stdout
    assert f"RENEWED {GOOD} {SERVER}" in r.stdout, r.stdout
    assert [a for a in _addresses(cli, cdev) if ":" not in a] == [f"{GOOD}/24"]
    assert f"{VPN_SERVER} via {SERVER}" in cli.run(f"ip -4 route show {VPN_SERVER}").stdout
    assert f"default via {SERVER}" in cli.run("ip -4 route show default").stdout
    assert "another address while the lease holds=" in r.stdout
