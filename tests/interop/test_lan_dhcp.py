"""The appliance's DHCP server against stock clients from Debian packages, in the router lab:
busybox udhcpc and ISC dhclient on unconfigured LAN hosts get an address, the gateway, the DNS
server (which resolves the VPN-only name) and the pushed domain, and reach the host behind the
VPN; a static lease is honoured; garbage and a MAC flood are dropped, counted and survived; a
restarted appliance (no lease file) hands out the same addresses.

One lab for the module: Debian's OpenVPN server (pushing `dhcp-option DOMAIN vpn.test`, with
dnsmasq behind it), the appliance with `dhcp_range`, and LAN hosts: the lab's LAN namespace (its
veth) plus one namespace per extra client, each on a macvlan of the LAN veth (its own MAC, its own
routes, its own /etc/resolv.conf untouched: the clients run our small lease scripts, never the
system's)."""
from __future__ import annotations

import ipaddress
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from lab.netns import Netns
from lab.router_lab import BEHIND, LAN_APP, SECRET_NAME, WEB_PORT, RouterLab, client_profile

RANGE = ("198.18.50.100", "198.18.50.199")
STATIC_MAC, STATIC_IP = "52:54:00:aa:bb:cc", "198.18.50.10"
LEASE_TIME = 600
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DHCLIENT = shutil.which("dhclient") or "/sbin/dhclient"

UDHCPC_SCRIPT = """#!/bin/sh
# busybox udhcpc calls this with deconfig|bound|renew|nak|leasefail and the lease in the environment.
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    env | grep -E '^(ip|mask|subnet|router|dns|domain|search|lease|serverid)=' > "$0.out.tmp"
    mv "$0.out.tmp" "$0.out" ;;
esac
exit 0
"""

DHCLIENT_SCRIPT = """#!/bin/sh
# dhclient's -sf script: apply the lease; never touch /etc/resolv.conf.
case "$reason" in
  PREINIT) ip link set "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    ip addr flush dev "$interface"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_routers" ] && ip route replace default via "${new_routers%% *}" dev "$interface"
    env | grep -E '^(reason|new_[a-z_]+)=' > "$0.out.tmp"
    mv "$0.out.tmp" "$0.out" ;;
esac
exit 0
"""

DHCLIENT_CONF = ("request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, "
                 "domain-search, dhcp-lease-time;\n")


class Host:
    """A LAN host: a namespace and its interface."""

    def __init__(self, ns: Netns, ifname: str, name: str, tmp: Path) -> None:
        self.ns, self.ifname, self.name, self.tmp = ns, ifname, name, tmp

    def script(self, kind: str, text: str) -> Path:
        p = self.tmp / f"{self.name}-{kind}.sh"
        p.write_text(text)
        p.chmod(0o755)
        Path(f"{p}.out").unlink(missing_ok=True)
        return p

    def forget(self) -> None:
        self.ns.run(f"ip addr flush dev {self.ifname}; ip route flush dev {self.ifname}", check=False)

    def udhcpc(self, extra: str = "") -> dict[str, str]:
        """`busybox udhcpc -i IF -n -q`: one lease, then exit (no release)."""
        s = self.script("udhcpc", UDHCPC_SCRIPT)
        r = self.ns.run(f"{BUSYBOX} udhcpc -i {self.ifname} -n -q -f -t 8 -T 2 -O search -s {s} {extra}", check=False,
                        timeout=60)
        assert r.returncode == 0, f"udhcpc on {self.name} got no lease:\n{r.stdout}\n{r.stderr}"
        return _vars(Path(f"{s}.out"))

    def dhclient(self, lab: RouterLab) -> dict[str, str]:
        """ISC dhclient in the foreground (-d, stopped by PID once bound), its lease file kept
        across runs (so a second run asks for the old address first, INIT-REBOOT)."""
        s = self.script("dhclient", DHCLIENT_SCRIPT)
        conf = self.tmp / f"{self.name}-dhclient.conf"
        conf.write_text(DHCLIENT_CONF)
        p = lab.start(self.ns, [DHCLIENT, "-d", "-1", "-v", "-sf", str(s), "-cf", str(conf),
                                "-lf", str(self.tmp / f"{self.name}.leases"), "-pf", str(self.tmp / f"{self.name}.pid"),
                                self.ifname], f"dhclient-{self.name}")
        out = Path(f"{s}.out")
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end and not out.exists() and p.alive():
                time.sleep(0.1)
            assert out.exists(), f"dhclient on {self.name} got no lease:\n{p.log()[-3000:]}"
            return _vars(out)
        finally:
            p.stop(5)


def _vars(p: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in p.read_text().splitlines() if "=" in line)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for tool in (BUSYBOX, DHCLIENT):
        assert Path(tool).exists(), f"{tool} is missing: run `make setup` (busybox-static, isc-dhcp-client)"
    lab = RouterLab(tmp_path_factory.mktemp("lan-dhcp"))
    try:
        lab.openvpn_server()
        lab.dnsmasq = lab.dns_server()
        lab.web_server()
        lab.toml = lab.appliance_toml(client_profile(lab.pki), lan_extra=(
            f'dhcp_range = ["{RANGE[0]}", "{RANGE[1]}"]\ndhcp_lease_time = {LEASE_TIME}\n'
            f'static_leases = {{ "{STATIC_MAC}" = "{STATIC_IP}" }}\n'))
        lab.app_proc = lab.appliance(lab.toml)
        lab.hosts = {"veth": Host(lab.lan, lab.lan_host_if, "veth", lab.tmp)}
        for name, mac in (("dhc", "52:54:00:18:50:02"), ("static", STATIC_MAC)):
            ns = lab._ns(name[0])
            ifname = f"m{name}"
            lab.lan.run(f"ip link add link {lab.lan_host_if} name {ifname} address {mac} type macvlan mode bridge && "
                        f"ip link set {ifname} netns {ns.name}")
            ns.run(f"ip link set {ifname} up")
            lab.hosts[name] = Host(ns, ifname, name, lab.tmp)
        yield lab
    finally:
        lab.close()


def _in_range(a: str) -> bool:
    return ipaddress.ip_address(RANGE[0]) <= ipaddress.ip_address(a) <= ipaddress.ip_address(RANGE[1])


def test_udhcpc_gets_address_gateway_dns_domain_and_reaches_the_host_behind_the_vpn(lab):
    h = lab.hosts["veth"]
    got = h.udhcpc()
    assert _in_range(got["ip"]), got
    assert got["router"] == LAN_APP and got["dns"].split() == [LAN_APP] and got["serverid"] == LAN_APP, got
    assert got["mask"] == "24" or got.get("subnet") == "255.255.255.0", got
    assert got["domain"] == "vpn.test" and got["lease"] == str(LEASE_TIME), got
    fetch = (f"import hashlib, urllib.request; print(hashlib.sha256(urllib.request.urlopen("
             f"'http://{BEHIND}:{WEB_PORT}/file', timeout=30).read()).hexdigest())")
    r = h.ns.run(f"{sys.executable} -c \"{fetch}\"", check=False, timeout=60)
    assert r.stdout.split() == [lab.web_digest], f"download through the VPN failed: {r.stdout} {r.stderr}"
    # the DNS server the lease names (the appliance's forwarder) resolves the name only the VPN side knows
    r = h.ns.run(f"{BUSYBOX} nslookup {SECRET_NAME} {got['dns'].split()[0]}", check=False, timeout=30)
    assert BEHIND in r.stdout, r.stdout + r.stderr


def test_dhclient_gets_address_gateway_dns_and_domain(lab):
    h = lab.hosts["dhc"]
    got = h.dhclient(lab)
    assert got["reason"] in ("BOUND", "REBOOT") and _in_range(got["new_ip_address"]), got
    assert got["new_routers"] == LAN_APP and got["new_domain_name_servers"] == LAN_APP, got
    assert got["new_subnet_mask"] == "255.255.255.0" and got["new_domain_name"] == "vpn.test", got
    assert got["new_dhcp_lease_time"] == str(LEASE_TIME), got
    r = h.ns.run(f"ping -c 2 -W 5 {BEHIND}", check=False, timeout=30)
    assert r.returncode == 0, f"no ping through the VPN from the dhclient host:\n{r.stdout}"


def test_a_static_lease_is_honoured(lab):
    got = lab.hosts["static"].udhcpc()
    assert got["ip"] == STATIC_IP and got["router"] == LAN_APP, got


def test_a_lease_host_name_resolves_on_the_lan_and_is_never_asked_of_the_vpn(lab):
    """udhcpc giving its host name (option 12): the appliance's DNS forwarder answers that name
    with the lease's address and the address's PTR with the name, as a home router's dnsmasq
    does; neither question reaches the VPN's DNS server (its dnsmasq logs every query)."""
    h = lab.hosts["veth"]
    mark = len(lab.dnsmasq.log())
    got = h.udhcpc("-x hostname:lan34printer")
    r = h.ns.run(f"{BUSYBOX} nslookup -type=a lan34printer {LAN_APP}", check=False, timeout=30)
    assert re.search(rf"Address:\s*{re.escape(got['ip'])}\b", r.stdout), r.stdout + r.stderr
    r = h.ns.run(f"{BUSYBOX} nslookup {got['ip']} {LAN_APP}", check=False, timeout=30)
    assert "name = lan34printer" in r.stdout, r.stdout + r.stderr
    r = h.ns.run(f"{BUSYBOX} nslookup -type=a lan34scanner {LAN_APP}", check=False, timeout=30)
    assert "NXDOMAIN" in r.stdout + r.stderr, r.stdout + r.stderr
    log = lab.dnsmasq.log()[mark:]
    assert "lan34" not in log and "50.18.198.in-addr.arpa" not in log, log[-2000:]


INFORM = r"""
import socket, struct, sys, time
server, me, other, bcast, net = sys.argv[1:6]
mac = bytes.fromhex(sys.argv[6].replace(":", ""))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 68))                 # unicast to us and broadcasts on the LAN alike
s.settimeout(1.0)
def inform(xid, ciaddr):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, xid, 0, 0, socket.inet_aton(ciaddr), bytes(4), bytes(4),
                      bytes(4), mac.ljust(16, bytes(1)))
    return hdr + bytes(192) + bytes((99, 130, 83, 99)) + bytes((53, 1, 8, 55, 3, 1, 3, 6, 255))
# forged ciaddr: the LAN's broadcast and network address, another host's; then our own (xid 4)
for xid, ciaddr in ((1, bcast), (2, net), (3, other), (4, me)):
    s.sendto(inform(xid, ciaddr), (server, 67))
got = []
end = time.monotonic() + 15
while time.monotonic() < end and 4 not in got:
    try:
        data = s.recv(2048)
    except socket.timeout:
        continue
    if len(data) >= 240 and data[0] == 2:
        got.append(struct.unpack_from("!I", data, 4)[0])
print(" ".join(map(str, got)))
"""


def test_inform_is_answered_only_to_its_own_address_never_to_a_forged_one(lab):
    """RFC 2131: the ACK to a DHCPINFORM goes unicast to ciaddr. A LAN host naming the LAN's
    broadcast address there would have every LAN host get the appliance's ACK (itself included,
    which is how it is seen here: the host listens on port 68 for broadcasts too); the network
    address or another host's are refused as well. Its own INFORM is answered."""
    ns = lab._ns("i")
    ifname, me, other = "minf", "198.18.50.60", "198.18.50.61"
    lab.lan.run(f"ip link add link {lab.lan_host_if} name {ifname} address 52:54:00:18:50:60 type macvlan mode bridge"
                f" && ip link set {ifname} netns {ns.name}")
    ns.run(f"ip addr add {me}/24 brd + dev {ifname} && ip link set {ifname} up")
    script = lab.write("dhcp-inform.py", INFORM)
    r = ns.run(f"{sys.executable} {script} {LAN_APP} {me} {other} 198.18.50.255 198.18.50.0 52:54:00:18:50:60",
               check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4"], f"ACKs received (by xid; 4 is our own INFORM): {r.stdout!r}"
    assert lab.app_proc.wait_for(r"DHCP server drops: .*inform ciaddr not a LAN host=2.*inform ciaddr not its source=1",
                                 40), lab.app_proc.log()[-3000:]


FLOOD = r"""
import random, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, sys.argv[1].encode())
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 68))         # the client port, as a root attacker's: from any other nothing is acted on
rng = random.Random(9)
MAGIC = bytes((99, 130, 83, 99))
def discover(mac):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, rng.getrandbits(32), 0, 0x8000, bytes(4), bytes(4),
                      bytes(4), bytes(4), mac.ljust(16, bytes(1)))
    return hdr + bytes(192) + MAGIC + bytes((53, 1, 1, 255))
good = discover(bytes((2, 0, 0, 0, 0, 0)))
bad = [b"", bytes(100), good[:239], good.replace(MAGIC, b"XXXX"), good[:-1] + bytes((12, 255)),
       bytes((2,)) + good[1:], good[:240] + bytes((12, 0)) * 400 + bytes((255,))]
for i in range(3000):
    if i % 2:
        msg = discover(bytes((2,)) + struct.pack("!IB", i, 7))
    else:
        msg = rng.choice(bad) + rng.randbytes(rng.randrange(8))
    s.sendto(msg, ("255.255.255.255", 67))
"""


def test_garbage_and_a_mac_flood_from_the_lan_are_dropped_counted_and_survived(lab):
    h = lab.hosts["static"]
    h.forget()      # from 0.0.0.0: what comes from a bound lease's address is limited to that lease's rate
    flood = lab.write("dhcp-flood.py", FLOOD)
    r = h.ns.run(f"{sys.executable} {flood} {h.ifname}", check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    lab.flooded = True
    assert lab.app_proc.wait_for(r"DHCP server drops: [a-zA-Z ]+=\d", 20), lab.app_proc.log()[-3000:]
    assert lab.app_proc.alive()
    assert lab.hosts["static"].udhcpc()["ip"] == STATIC_IP
    got = lab.hosts["veth"].udhcpc()                 # a client after the flood still gets an address
    assert _in_range(got["ip"]) and got["router"] == LAN_APP, got


def test_a_restarted_appliance_hands_out_the_same_addresses(lab):
    before = {"veth": lab.hosts["veth"].udhcpc()["ip"], "dhc": lab.hosts["dhc"].dhclient(lab)["new_ip_address"]}
    lab.app_proc.stop(10)
    # the last line on stopping: every reason the flood test's garbage hit, counted
    assert not getattr(lab, "flooded", False) or all(f"{why}=" in lab.app_proc.log() for why in ("short", "bad magic", "not a BOOTREQUEST",
                                                           "options overrun", "too many options"))
    for h in lab.hosts.values():
        h.forget()
    lab.app_proc = lab.appliance(lab.toml)
    # udhcpc starts from nothing (DISCOVER): the MAC's hash picks the same address; dhclient asks
    # for the one in its lease file (INIT-REBOOT) and gets it.
    dhc = lab.hosts["dhc"].dhclient(lab)
    after = {"veth": lab.hosts["veth"].udhcpc()["ip"], "dhc": dhc["new_ip_address"]}
    assert after == before and dhc["reason"] == "REBOOT", (before, after, dhc, lab.app_proc.log()[-2000:])
    assert "DHCP server on" in lab.app_proc.log()
