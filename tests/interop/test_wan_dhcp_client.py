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
- Against Debian's dnsmasq (and busybox udhcpd for a lease shorter than dnsmasq's 2 min), with
  the segment captured by a packet socket in the server's namespace:
  - the boot waits for a server that comes up after more than 5 tries (the old client raised
    there, and PID 1 powered the VM off), and SIGTERM still ends the wait at once;
  - the renewal at T1 is a unicast REQUEST to the server, ciaddr set, no requested address or
    server id (RFC 2131 4.3.2), ACKed unicast: the lease is longer, the NIC untouched (before: a
    broadcast DISCOVER, a whole new exchange);
  - a server gone at T1 and back by T2 answers the broadcast REQUEST (REBINDING); a rogue that
    answers it first with another address, and NAKs, is dropped;
  - a rogue's answers to the RENEWING request (another server id, another address in the
    server's name, 500 NAKs in its name) lose nothing: the server's ACK that follows wins;
  - a rogue's REBINDING ACK of our own address with its own router and an infinite lease renews
    the address on the lease's terms: the default route stays, the lease ends (before: the
    rogue's router, and a lease that never ran out);
  - the server renumbers (dnsmasq restarted on another network NAKs the old address): the WAN
    moves to the new address at T1's NAK, seconds later, not at the lease's expiry; a forged NAK
    alone (no ACK after it) starts a round of DISCOVERs whose offer of the same address changes
    nothing on the NIC;
  - a lease that runs out with no server answering is removed from the NIC (before: kept
    forever), and the client takes a lease again when a server is back;
  - a flood of unusable offers for the client's own transaction while it waits at boot costs
    it a few percent of a core (its reading is paced).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from appliance.boot import dhcp_client as dc
from lab.netns import Netns, Proc

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



# ---------------------------------------------------------------- against dnsmasq: boot, T1, T2, NAKs
# dnsmasq (Debian's) serves GOOD alone, a 2 min lease (its least), T1/T2 as options 58/59 in seconds;
# the client's Policy lets T1 be that short (the appliance's takes T1 >= 30 s).

# What crosses the server's end of the veth, as JSON lines (an AF_PACKET socket, both ways), and
# in mode "renewing"/"rebinding" a rogue on the segment: at the first REQUEST with ciaddr set that
# goes unicast (renewing) or broadcast (rebinding) it answers from port 6767 -- an ACK of another
# address from another server id, the same in the real server's name, then a storm of NAKs in the
# real server's name -- and prints "forged" (mode "nak": the NAKs alone, at the unicast one; mode "own":
# at the broadcast one an ACK of the client's own address with its own router and an infinite lease). In mode
# "flood" it answers each DISCOVER it sees
# with offers the client cannot use (a non-contiguous netmask), as fast as it can, from port 6767
# (mode "flood-ports": from 64 ports in turn, 6800-6863, more than the client refuses). Bounded by time.
SEGMENT = r"""
import json, os, socket, struct, sys, time
dev, seconds, mode, real, rogue, other, naks = sys.argv[1], float(sys.argv[2]), sys.argv[3], *sys.argv[4:7], int(sys.argv[7])
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))   # ETH_P_ALL: what leaves too
cap.bind((dev, 0))
cap.settimeout(0.1)
if mode.startswith("flood"):             # PACKET_IGNORE_OUTGOING: our own flood would hide the DISCOVERs
    cap.setsockopt(263, 23, 1)
txs = []
for port in [6767] + (list(range(6800, 6864)) if mode == "flood-ports" else []):
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    tx.bind(("0.0.0.0", port))
    txs.append(tx)
tx = txs[0]
def options(d):
    out, i = {}, 240
    while i + 1 < len(d) and d[i] != 255:
        if d[i] == 0:
            i += 1
            continue
        out[d[i]] = d[i + 2:i + 2 + d[i + 1]]
        i += 2 + d[i + 1]
    return out
def answer(req, kind, yiaddr, sid, mask="255.255.255.0", lease=b"\0\0\x0e\x10"):
    out = bytearray(req[:240])
    out[0] = 2
    out[16:20] = socket.inet_aton(yiaddr)
    opts = bytes([53, 1, kind, 54, 4]) + socket.inet_aton(sid)
    if kind != 6:
        opts += bytes([1, 4]) + socket.inet_aton(mask) + bytes([3, 4]) + socket.inet_aton(sid) + bytes([51, 4]) + lease
    return bytes(out) + opts + b"\xff"
print("capturing", flush=True)
end = time.monotonic() + seconds
forged = False
flood_xid = None
sent = 0
while time.monotonic() < end:
    if flood_xid is not None:
        for _ in range(200):
            try:
                txs[sent % len(txs)].sendto(flood_xid, ("255.255.255.255", 68))
                sent += 1
            except OSError:
                break
        cap.settimeout(0.0005)
    try:
        frame, addr = cap.recvfrom(65536)
    except (socket.timeout, BlockingIOError):
        continue
    if frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or len(ip) < ihl + 8 + 240:
        continue
    sport, dport = struct.unpack_from("!HH", ip, ihl)
    if sport not in (67, 68) or dport not in (67, 68):
        continue
    d = ip[ihl + 8:]
    o = options(d)
    rec = dict(t=round(time.monotonic(), 3), eth_dst=frame[:6].hex(), src=socket.inet_ntoa(ip[12:16]),
               dst=socket.inet_ntoa(ip[16:20]), op=d[0], xid=struct.unpack_from("!I", d, 4)[0],
               flags=struct.unpack_from("!H", d, 10)[0], ciaddr=socket.inet_ntoa(d[12:16]),
               yiaddr=socket.inet_ntoa(d[16:20]), type=o.get(53, b"?")[0], requested=o.get(50, b"").hex(),
               server=o.get(54, b"").hex())
    print(json.dumps(rec), flush=True)
    unicast = rec["dst"] != "255.255.255.255"
    if (mode == "own" and not forged and d[0] == 1 and rec["type"] == 3 and rec["ciaddr"] != "0.0.0.0"
            and not unicast):
        forged = True
        tx.sendto(answer(d, 5, rec["ciaddr"], rogue, lease=b"\xff\xff\xff\xff"), ("255.255.255.255", 68))
        print("forged", flush=True)
    if (mode in ("renewing", "rebinding", "nak") and not forged and d[0] == 1 and rec["type"] == 3
            and rec["ciaddr"] != "0.0.0.0" and unicast == (mode != "rebinding")):
        forged = True
        acks = ((5, other, rogue), (5, other, real)) if mode != "nak" else ()
        for kind, yiaddr, sid in acks + ((6, "0.0.0.0", real),) * naks:
            tx.sendto(answer(d, kind, yiaddr, sid), ("255.255.255.255", 68))
        print("forged", flush=True)
    if mode.startswith("flood") and d[0] == 1 and rec["type"] == 1:
        flood_xid = answer(d, 2, other, rogue, "255.0.255.0")
print("flooded", sent, flush=True)
"""

# The boot routine with a Policy from the command line, then the renewal thread for `seconds`, or
# until the file named by the 5th argument exists (Dhcp.final_now: a test that has seen what it
# waits for reads FINAL at once instead of at a deadline set for a loaded machine).
# Every drop is logged with all counters (the last line has the totals), unless a 4th argument
# gives the appliance's rate limit back (a flood's CPU is measured with the appliance's logging).
RUN = r"""
import json, logging, os, sys, time
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client as dc
dev, policy, seconds = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
dc.Drops.LOG_EVERY = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
def show(tag, lease):
    print(tag, json.dumps(dict(address=lease.address, prefixlen=lease.prefixlen, router=lease.router,
                               server=lease.server, expires=round(lease.expires, 1), on_nic=lease.on_nic)), flush=True)
t = time.monotonic()
lease = dc.dhcp_configure(dev, policy=dc.Policy(**policy))
print(f"BOOT after {time.monotonic() - t:.1f} s", flush=True)
show("BOOT", lease)
end, final = time.monotonic() + seconds, (sys.argv[5] if len(sys.argv) > 5 else "")
while time.monotonic() < end and not (final and os.path.exists(final)):
    time.sleep(0.05)
show("FINAL", lease)
"""
SHORT = {"min_renew": 1}                 # T1/T2 as dnsmasq sends them (3 s, 9 s; it takes a T1 under 3 s for T2 - 1)


class Dhcp:
    """dnsmasq, the segment's capture (and rogue) and our client, in the `wan` fixture's namespaces."""

    def __init__(self, wan, tmp_path):
        self.srv, self.cli, self.sdev, self.cdev = wan
        self.tmp = tmp_path
        self.procs: list[Proc] = []
        self.dnsmasq: Proc | None = None
        self.segment: Proc | None = None
        self.client: Proc | None = None

    def start_dnsmasq(self, t1: int = 3, t2: int = 9, address: str = GOOD, router: str = SERVER,
                      extra: tuple[str, ...] = ()) -> Proc:
        n = sum(p.log_path.name.startswith("dnsmasq") for p in self.procs)
        p = Proc(self.srv, [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                            "--no-resolv", "--no-hosts", "--port=0", "--bind-interfaces", f"--interface={self.sdev}",
                            "--except-interface=lo", "--no-ping", "--pid-file=", "--user=root", "--log-dhcp",
                            "--log-facility=-", f"--dhcp-range={address},{address},255.255.255.0,2m",
                            f"--dhcp-option=option:router,{router}", f"--dhcp-option=option:T1,{t1}",
                            f"--dhcp-option=option:T2,{t2}", f"--dhcp-leasefile={self.tmp / 'leases'}", *extra],
                 self.tmp / f"dnsmasq{n}.log")
        self.procs.append(p)
        assert p.wait_for("DHCP, IP range", 10), p.log()
        self.dnsmasq = p
        return p

    def start_udhcpd(self, lease: int) -> Proc:
        """busybox udhcpd: it takes leases shorter than dnsmasq's 2 min (min_lease)."""
        conf = self.tmp / "udhcpd.conf"
        conf.write_text(f"start {GOOD}\nend {GOOD}\ninterface {self.sdev}\nlease_file {self.tmp / 'udhcpd.leases'}\n"
                        f"min_lease 5\nmax_leases 1\nopt subnet 255.255.255.0\nopt router {SERVER}\nopt lease {lease}\n")
        n = sum(p.log_path.name.startswith("udhcpd") for p in self.procs)
        p = Proc(self.srv, ["busybox", "udhcpd", "-f", "-a", "100", str(conf)], self.tmp / f"udhcpd{n}.log")
        self.procs.append(p)
        time.sleep(0.3)
        assert p.alive(), p.log()
        return p

    def start_segment(self, mode: str = "capture", seconds: float = 60, naks: int = 0) -> Proc:
        p = Proc(self.srv, [sys.executable, "-c", SEGMENT, self.sdev, str(seconds), mode, SERVER, ROGUE, BAD, str(naks)],
                 self.tmp / "segment.log")
        self.procs.append(p)
        assert p.wait_for("capturing", 10), p.log()
        self.segment = p
        return p

    def start_client(self, policy: dict, seconds: float, drops_every: float = 0.0) -> Proc:
        p = Proc(self.cli, [sys.executable, "-c", RUN, self.cdev, json.dumps(policy), str(seconds), str(drops_every),
                            str(self.tmp / "final-now")], self.tmp / "client.log")
        self.procs.append(p)
        self.client = p
        return p

    def final_now(self) -> None:
        """The client prints FINAL now, not at its `seconds` (for a test that saw what it waited for)."""
        (self.tmp / "final-now").touch()

    def packets(self) -> list[dict]:
        assert self.segment is not None
        return [json.loads(line) for line in self.segment.log().splitlines() if line.startswith("{")]

    def lease(self, tag: str) -> dict:
        assert self.client is not None
        lines = [line for line in self.client.log().splitlines() if line.startswith(tag + " {")]
        assert lines, self.client.log()
        return json.loads(lines[-1].split(" ", 1)[1])

    def drops(self) -> str:
        assert self.client is not None
        lines = [line for line in self.client.log().splitlines() if "DHCP replies dropped" in line]
        return lines[-1] if lines else ""

    def close(self) -> None:
        for p in self.procs:
            if p.p.poll() is None:
                try:
                    os.kill(p.p.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            p.stop()


@pytest.fixture
def dhcp(wan, tmp_path):
    d = Dhcp(wan, tmp_path)
    try:
        yield d
    finally:
        d.close()


def _v4(ns: Netns, dev: str) -> list[str]:
    return [a for a in _addresses(ns, dev) if ":" not in a]


def _tunnel_route(dhcp: Dhcp) -> None:
    """What the tunnel adds once the WAN is up: a host route to the VPN server via the WAN router."""
    dhcp.cli.run(f"ip route add {VPN_SERVER}/32 via {SERVER} dev {dhcp.cdev}")


def _tunnel_route_kept(dhcp: Dhcp) -> bool:
    return f"{VPN_SERVER} via {SERVER}" in dhcp.cli.run(f"ip -4 route show {VPN_SERVER}").stdout


def _mac(ns: Netns, dev: str) -> str:
    return ns.run(f"cat /sys/class/net/{dev}/address").stdout.strip().replace(":", "")


def test_the_boot_waits_for_a_dhcp_server_that_comes_up_late(dhcp):
    """No server for more than 5 tries' worth (the old client's limit: it raised, PID 1 powered
    the VM off); the client keeps asking, with pauses, and takes the lease once dnsmasq is up."""
    client = dhcp.start_client({"reply_wait": 0.5, "tries": 2, "pause_first": 0.5, "pause_max": 1.0,
                                "log_every": 0}, seconds=0)
    assert client.wait_for(r"no DHCP lease yet: (8|9|\d\d) tries", 20), client.log()
    assert client.alive() and "BOOT" not in client.log()
    dhcp.start_dnsmasq()
    assert client.wait_for(r"BOOT \{", 15), client.log()
    assert dhcp.lease("BOOT")["address"] == GOOD and _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    assert f"DHCP lease {GOOD}/24 router {SERVER}" in client.log()          # the line tests/vm/test_modes.py reads
    tries = [int(m) for m in re.findall(r"no DHCP lease yet: (\d+) tries", client.log())]
    assert tries == sorted(tries) and tries[-1] >= 8
    assert "(try 1 of 2)" in client.log() and "(try 1 of 2)" not in client.log().split("no DHCP lease yet")[1]


def test_sigterm_ends_the_wait_for_a_server_that_never_comes(dhcp):
    # A pause of a minute (the default's longest) after the first round: an exit within a quarter
    # of it ended the pause, under any load. The 2 s bound beside a 5 s pause this had missed
    # under CI's load.
    client = dhcp.start_client({"reply_wait": 0.5, "tries": 2, "pause_first": 60, "pause_max": 60}, seconds=0)
    assert client.wait_for(r"no DHCP lease yet: .*asking again in (5[4-9]|6[0-6]) s", 10), client.log()
    t = time.monotonic()
    client.p.send_signal(signal.SIGTERM)
    assert client.p.wait(15) == 0
    assert time.monotonic() - t < 15 and "SIGTERM while waiting for a DHCP lease: stopping" in client.log()


def test_a_renewal_is_a_unicast_request_to_the_server_and_changes_nothing_on_the_nic(dhcp):
    dhcp.start_dnsmasq()
    segment = dhcp.start_segment()
    client = dhcp.start_client(SHORT, seconds=5)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    _tunnel_route(dhcp)
    assert client.wait_for(r"FINAL \{", 20), client.log()
    assert _tunnel_route_kept(dhcp)
    boot, final = dhcp.lease("BOOT"), dhcp.lease("FINAL")
    assert "(renewing; renewal in" in client.log()
    assert final["address"] == boot["address"] == GOOD and final["expires"] > boot["expires"]
    assert _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    pk = dhcp.packets()
    boot_ack = next(i for i, p in enumerate(pk) if p["type"] == 5)
    renew = next(p for p in pk[boot_ack + 1:] if p["type"] == 3)
    assert renew["dst"] == SERVER and renew["eth_dst"] == _mac(dhcp.srv, dhcp.sdev)     # unicast, to the server
    assert renew["src"] == GOOD and renew["ciaddr"] == GOOD and renew["flags"] == 0
    assert renew["requested"] == "" and renew["server"] == ""                          # RFC 2131 4.3.2 RENEWING
    ack = next(p for p in pk if p["type"] == 5 and p["xid"] == renew["xid"])
    assert ack["dst"] == GOOD and ack["yiaddr"] == GOOD
    assert not any(p["type"] == 1 for p in pk[boot_ack:]), "a renewal sent a DISCOVER"
    assert segment.alive()


def test_a_server_gone_at_t1_and_back_by_t2_is_found_by_rebinding_past_a_rogue(dhcp):
    """dnsmasq is gone at T1: the unicast REQUEST goes unanswered; it is back (frozen until the
    rogue has answered, so the rogue is first) by T2: the broadcast REQUEST (REBINDING) is
    answered by the rogue -- another address, and NAKs -- and by dnsmasq; the client keeps its
    address, the rogue's answers dropped and counted."""
    first = dhcp.start_dnsmasq()
    dhcp.start_segment("rebinding", naks=3)
    client = dhcp.start_client(SHORT, seconds=11)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    _tunnel_route(dhcp)
    first.stop()                                                 # gone before T1 (3 s)
    assert client.wait_for("DHCP renewing request unanswered", 8), client.log()
    back = dhcp.start_dnsmasq()                                  # before T2 (9 s)
    os.kill(back.p.pid, signal.SIGSTOP)
    assert dhcp.segment.wait_for("forged", 10), client.log()
    os.kill(back.p.pid, signal.SIGCONT)
    assert client.wait_for(r"FINAL \{", 15), client.log()
    assert "(rebinding; renewal in" in client.log() and "(init;" not in client.log()
    assert _tunnel_route_kept(dhcp)
    assert dhcp.lease("FINAL")["address"] == GOOD and _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    pk = dhcp.packets()
    requests = [p for p in pk if p["type"] == 3 and p["ciaddr"] == GOOD]
    assert requests[0]["dst"] == SERVER and requests[1]["dst"] == "255.255.255.255"
    assert requests[1]["eth_dst"] == "ffffffffffff" and requests[1]["server"] == ""
    assert requests[1]["t"] - requests[0]["t"] > 3                 # at T2, not a retry at once
    assert any(p["type"] == 5 and p["xid"] == requests[1]["xid"] and p["src"] == SERVER for p in pk)
    assert "another address while the lease holds=2" in dhcp.drops()


def test_a_forged_nak_storm_while_renewing_does_not_lose_the_lease(dhcp):
    """The server's ACK comes after a rogue's answers to the RENEWING request (dnsmasq frozen
    until then): an ACK of another address from another server id, one in the server's name,
    and 500 NAKs in the server's name. The ACK wins; no DISCOVER, the NIC untouched."""
    dnsmasq = dhcp.start_dnsmasq()
    dhcp.start_segment("renewing", naks=500)
    client = dhcp.start_client(SHORT, seconds=6)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    _tunnel_route(dhcp)
    os.kill(dnsmasq.p.pid, signal.SIGSTOP)                      # before T1 (3 s): the REQUEST waits in its socket
    assert dhcp.segment.wait_for("forged", 10), client.log()
    os.kill(dnsmasq.p.pid, signal.SIGCONT)
    assert client.wait_for(r"FINAL \{", 15), client.log()
    assert "(renewing; renewal in" in client.log() and "refused (NAK)" not in client.log()
    assert _tunnel_route_kept(dhcp)
    assert dhcp.lease("FINAL")["address"] == GOOD and _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    drops = dhcp.drops()
    assert "another server=1" in drops and "another address while the lease holds=1" in drops
    assert "repeated NAK=" in drops                # (those the socket's queue held: the kernel drops the rest)
    pk = dhcp.packets()
    boot_ack = next(i for i, p in enumerate(pk) if p["type"] == 5)
    assert not any(p["type"] == 1 for p in pk[boot_ack:])


def test_a_rogues_rebinding_ack_of_our_address_keeps_our_router_and_a_finite_lease(dhcp):
    """dnsmasq is gone at T1; at T2 the broadcast REQUEST (REBINDING) is answered by a rogue with
    our own address, its own router and an infinite lease. The address is renewed, but on the
    lease's terms: the default route stays via the server's router (before: via the rogue's),
    and the lease ends no later than the one held (before: never)."""
    first = dhcp.start_dnsmasq()
    dhcp.start_segment("own")
    client = dhcp.start_client(SHORT, seconds=11)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    first.stop()                                                 # gone before T1 (3 s)
    assert dhcp.segment.wait_for("forged", 15), client.log()
    assert client.wait_for(r"\(rebinding; renewal in", 5), client.log()
    assert client.wait_for(r"FINAL \{", 15), client.log()
    assert f"default via {SERVER}" in dhcp.cli.run("ip -4 route show default").stdout
    assert f"router {ROGUE}" not in client.log()
    boot, final = dhcp.lease("BOOT"), dhcp.lease("FINAL")
    assert final["router"] == SERVER and final["server"] == SERVER and final["address"] == GOOD
    assert final["expires"] - boot["expires"] < 20               # 120 s from the rebinding REQUEST, not forever


RENUMBERED, NEW_ROUTER = "198.18.61.10", "198.18.61.1"


def test_a_server_that_renumbers_moves_the_wan_within_seconds_not_at_lease_expiry(dhcp):
    """The ISP renumbers: dnsmasq restarts serving another network (authoritative: it NAKs the
    old address, 'wrong network'). The RENEWING REQUEST at T1 is NAKed; the client DISCOVERs at
    once and takes the new address and router, seconds later -- before, it took only its old
    address until the lease (2 min here, a day at some ISPs) ran out, the WAN dead meanwhile."""
    old = dhcp.start_dnsmasq(t1=3, t2=100)
    segment = dhcp.start_segment(seconds=40)
    # FINAL once the move is seen (Dhcp.final_now), at most 12 s after the boot (T1's 3 s and a
    # round, ~4 s; asserted within 15 s below). 20 s, then 12 s, fixed before (trim44a, trim45a).
    client = dhcp.start_client(SHORT, seconds=12)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    booted = time.monotonic()
    _tunnel_route(dhcp)
    old.stop()
    dhcp.srv.run(f"ip addr add {NEW_ROUTER}/24 dev {dhcp.sdev}")
    (dhcp.tmp / "leases").unlink(missing_ok=True)
    dhcp.start_dnsmasq(t1=60, t2=100, address=RENUMBERED, router=NEW_ROUTER, extra=("--dhcp-authoritative",))
    assert client.wait_for("renumbered the WAN", 20), client.log()
    moved = time.monotonic() - booted
    assert client.wait_for(r"DHCP lease 198\.18\.61\.10/24 router 198\.18\.61\.1 .*\(init after a NAK;", 5), \
        client.log()
    assert _v4(dhcp.cli, dhcp.cdev) == [f"{RENUMBERED}/24"]
    assert f"default via {NEW_ROUTER}" in dhcp.cli.run("ip -4 route show default").stdout
    assert moved < 15, moved                                    # T1 (3 s) and a round, not the lease's 120 s
    dhcp.final_now()                                            # (at its 12 s before: helper trim45a)
    assert client.wait_for(r"FINAL \{", 30), client.log()
    assert dhcp.lease("FINAL")["address"] == RENUMBERED and dhcp.lease("BOOT")["address"] == GOOD
    pk = dhcp.packets()
    nak = next(p for p in pk if p["type"] == 6)
    assert any(p["type"] == 3 and p["xid"] == nak["xid"] and p["ciaddr"] == GOOD for p in pk)   # our RENEWING
    assert any(p["type"] == 1 and p["t"] >= nak["t"] for p in pk)                               # DISCOVER after it
    print(f"WAN moved {moved:.1f} s after the boot's lease (T1 3 s); renumbering NAK at "
          f"{nak['t'] - pk[0]['t']:.1f} s of the capture")
    assert segment.alive()


def test_a_forged_nak_alone_while_renewing_keeps_the_address_and_the_routes(dhcp):
    """A rogue NAKs the RENEWING REQUEST in the server's name (dnsmasq frozen until the client
    acts on it, so no ACK follows): the client DISCOVERs at once, the address kept; dnsmasq
    offers the same address again and nothing changes on the NIC -- the tunnel's host route
    stays. A second NAK within nak_every starts no second round."""
    dnsmasq = dhcp.start_dnsmasq()
    dhcp.start_segment("nak", naks=5)
    client = dhcp.start_client(SHORT, seconds=8)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    _tunnel_route(dhcp)
    os.kill(dnsmasq.p.pid, signal.SIGSTOP)                      # before T1 (3 s): the REQUEST waits in its socket
    assert dhcp.segment.wait_for("forged", 10), client.log()
    assert client.wait_for(r"refused \(NAK\): asking anew", 10), client.log()
    assert _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"] and _tunnel_route_kept(dhcp)     # kept while asking
    os.kill(dnsmasq.p.pid, signal.SIGCONT)
    assert client.wait_for(r"\(init after a NAK;", 15), client.log()
    dhcp.final_now()                                            # (at its 8 s before: helper trim45a)
    assert client.wait_for(r"FINAL \{", 15), client.log()
    assert "renumbered" not in client.log()
    assert _tunnel_route_kept(dhcp)
    assert dhcp.lease("FINAL")["address"] == GOOD and _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    assert f"default via {SERVER}" in dhcp.cli.run("ip -4 route show default").stdout
    assert "repeated NAK=4" in dhcp.drops()


def test_a_lease_that_runs_out_unanswered_is_removed_then_a_new_one_is_taken(dhcp):
    """udhcpd gives a 10 s lease and goes: RENEWING at 5 s and REBINDING at 8.75 s go
    unanswered; at the expiry one more round of DISCOVERs, then the address goes (RFC 2131: it
    was kept forever) -- the default route with it --; the client asks on, and takes the lease
    again when udhcpd is back."""
    server = dhcp.start_udhcpd(lease=10)
    client = dhcp.start_client({"min_renew": 1, "reply_wait": 1, "tries": 2, "pause_first": 1, "pause_max": 2},
                               seconds=60)
    assert client.wait_for(r"BOOT \{", 15), client.log()
    assert "lease 10s" in client.log() and _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    server.stop()
    assert client.wait_for("DHCP rebinding request unanswered", 15), client.log()
    assert _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]                 # kept while the lease holds
    assert client.wait_for("ran out, no server answered: address removed", 10), client.log()
    assert _v4(dhcp.cli, dhcp.cdev) == [] and dhcp.cli.run("ip -4 route show default").stdout == ""
    log = client.log()
    assert log.index("DHCP renewing request unanswered") < log.index("DHCP rebinding request unanswered")
    dhcp.start_udhcpd(lease=10)
    assert client.wait_for(r"\(init; renewal in", 15), client.log()
    assert _v4(dhcp.cli, dhcp.cdev) == [f"{GOOD}/24"]
    assert f"default via {SERVER}" in dhcp.cli.run("ip -4 route show default").stdout


@pytest.mark.parametrize("mode", ["flood", "flood-ports"])
def test_a_flood_of_offers_for_our_transaction_while_waiting_at_boot_costs_little_cpu(dhcp, mode):
    """No server; a rogue answers every DISCOVER it sees with unusable offers for that very
    transaction, as fast as it can (the xid filter cannot refuse those). From one port, the
    source is refused by the kernel after a few; from 64 ports (more than the client refuses),
    the client reads them paced. Either way its CPU time stays a small part of the wall time,
    and it keeps asking."""
    segment = dhcp.start_segment(mode, seconds=10)
    client = dhcp.start_client({}, seconds=0, drops_every=dc.Drops.LOG_EVERY)
    time.sleep(1)
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = open(f"/proc/{client.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks
    c0, t0 = cpu(), time.monotonic()
    time.sleep(8)
    used, wall = cpu() - c0, time.monotonic() - t0
    assert segment.wait_for(r"flooded \d+", 5), segment.log()[-500:]
    sent = int(re.findall(r"flooded (\d+)", segment.log())[-1])
    print(f"client CPU {used:.2f} s in {wall:.1f} s of a flood of {sent} offers ({used / wall:.0%})")
    assert sent > 100_000 and client.alive()
    assert used / wall < 0.25, (used, wall)
    assert "(try 2 of 5)" in client.log()                        # still asking


def test_a_flood_of_offers_for_our_transaction_does_not_crowd_out_the_servers_offer(dhcp):
    """dnsmasq answers, and a rogue beside it (its address, another port) floods unusable offers
    for each DISCOVER's transaction the moment it sees it. With the socket's default queue (~200
    datagrams) the flood filled it before dnsmasq's OFFER came and the kernel dropped the OFFER:
    leases after 0.7, 4.7, 6.3, 6.7, 9.5 and 20.8 s in six runs. With a 4 MB queue and paced
    reading: 1.0-2.6 s in six runs, but on the CI machine the first try's ACK was lost behind
    ~9,000 offers and four more tries behind that flood, still queued: 20.1 s. Now each try begins
    with an empty queue and the rogue's source is refused by the kernel after four: 0.2-0.4 s."""
    dhcp.start_dnsmasq()
    dhcp.start_segment("flood", seconds=30)
    client = dhcp.start_client({}, seconds=0, drops_every=dc.Drops.LOG_EVERY)
    t = time.monotonic()
    assert client.wait_for(r"BOOT \{", 25), client.log()
    took = time.monotonic() - t
    print(f"lease under a flood after {took:.1f} s")
    assert dhcp.lease("BOOT")["address"] == GOOD
    # The first try's OFFER was read in each of those six runs; the second try is allowed so that
    # a loaded machine's slow dnsmasq does not fail it (before the fix, four of six needed more).
    assert "(try 2 of 5)" not in client.log(), client.log()

