"""The WAN against the kernel itself (net41), in two namespaces joined by a veth -- "gw" (the WAN's
router, and the attacker beside it: the redirects are sent from there) and "app" (the appliance's side, its
code run there by a small script):

- ICMP redirects: a spoofed redirect (source: the gateway's address, as any host on the segment
  can send it; made with raw sockets) that Linux's defaults take -- shown first: the kernel's path to the destination
  then leads to the attacker's address -- is refused once router/nics.py refuse_redirects ran
  (what configure_nic does for the WAN and the LAN), IPv4 and IPv6; the kernel's ICMP counters
  say each redirect arrived before its effect is judged. The undo gives the old values back.
- The static WAN's keeper (router/static_wan.py on keep_on_link's thread) puts an IPv6 address
  removed while the link stays up back at once -- woken by the removal's netlink event, as for
  IPv4 -- not at its periodic check (set to 120 s here, so only the event can explain it).
- The route keeper's hints (gateway/route_keeper.py KeptRoutes on a real RouteWatch socket):
  the host's unrelated route churn and link changes are no hint; a kept route's removal, or its
  device's link going down, is.
No OpenVPN here: the kernel's behaviour is the proof; tests/unit/test_redirects.py,
tests/unit/test_route_keeper.py and tests/unit/test_wan_dhcp_release.py have the decisions.
"""
from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.netns import Netns

pytestmark = [pytest.mark.root, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
GW, APP, EVIL = "198.18.41.1", "198.18.41.2", "198.18.41.66"
GW6_LL, EVIL6_LL, APP6 = "fe80::1", "fe80::66", "2001:db8:41::2"

# In the gw namespace: one sender for the module, a spoofed redirect per line read ("4 <dst>" /
# "6 <dst>"), "SENT" once it left. Raw sockets, not scapy: its import took ~0.7 s of CPU (12 s of
# wall time on the loaded machine) for two packets the kernel builds the headers of itself.
SENDER = r"""
import socket, struct, sys
dev, gw, app, evil, gw6, evil6, app6, mac = sys.argv[1:9]

def csum(b):
    b += bytes(len(b) % 2)
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s4.bind((gw, 0))                   # the gateway's address: the redirect's source, spoofed by anyone
s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)    # ND: hop limit 255 or dropped
idx = socket.if_nametoindex(dev)
s6.bind((gw6, 0, 0, idx))          # the router's link-local address: a redirect must come from it
print("READY", flush=True)
for line in sys.stdin:
    fam, dst = line.split()
    if fam == "4":
        # "host redirect: for <dst> use <evil>", about a packet the appliance sent (its echo
        # reply: the kernel's own ICMP, no socket needed to take it), the inner header as sent
        inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 1, 0,
                            socket.inet_aton(app), socket.inet_aton(dst)) + struct.pack("!BBHHH", 0, 0, 0, 0, 0)
        body = struct.pack("!BBH4s", 5, 1, 0, socket.inet_aton(evil)) + inner
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        s4.sendto(body, (app, 0))
    else:
        # type 137: target <evil6> (a router, link-local), destination <dst>, the target's MAC
        # (the kernel computes an ICMPv6 raw socket's checksum)
        body = (struct.pack("!BBHI", 137, 0, 0, 0) + socket.inet_pton(socket.AF_INET6, evil6)
                + socket.inet_pton(socket.AF_INET6, dst) + bytes([2, 1]) + bytes.fromhex(mac.replace(":", "")))
        s6.sendto(body, (app6, 0, 0, idx))
    print("SENT", flush=True)
"""

# In the app namespace: what configure_nic does about redirects, undone when stdin closes.
REFUSER = r"""
import sys
from appliance.router.nics import Undo, refuse_redirects
undo = Undo()
refuse_redirects(sys.argv[1], undo)
print("READY", flush=True)
sys.stdin.read()
undo.run()
print("UNDONE", flush=True)
"""

# In the app namespace: configure_nic's refusal first, then a TUN made after it, as the VPN's
# own device is (its values from `default`), and a spoofed redirect written into it -- what the
# VPN server, or a host behind it, can send down the tunnel: from the WAN gateway's address,
# "for <dst> use <evil>" (a WAN neighbour). "WROTE" once it is in; undone when stdin closes.
TUN_REDIRECT = r"""
import fcntl, os, socket, struct, subprocess, sys
from appliance.router.nics import Undo, refuse_redirects
wan, name, gw, app, evil, dst = sys.argv[1:7]
undo = Undo()
refuse_redirects(wan, undo)
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))    # TUNSETIFF: IFF_TUN | IFF_NO_PI
subprocess.run(["ip", "addr", "add", "198.19.41.2/24", "dev", name], check=True)
subprocess.run(["ip", "link", "set", name, "up"], check=True)

def csum(b):
    b += bytes(len(b) % 2)
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

def ip(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload

inner = ip(app, dst, 1, struct.pack("!BBHHH", 0, 0, 0, 0, 0))      # the appliance's echo reply to dst
icmp = struct.pack("!BBH4s", 5, 1, 0, socket.inet_aton(evil)) + inner
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
print("READY", flush=True)
for line in sys.stdin:
    os.write(fd, ip(gw, "198.19.41.2", 1, icmp))
    print("WROTE", flush=True)
undo.run()
print("UNDONE", flush=True)
"""

# In the app namespace: the static WAN's keeper for the IPv6 address only, its periodic check
# pushed to 120 s (only an event wakes it within the test's deadline).
KEEPER = r"""
import ipaddress, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
from appliance.boot import dhcp_client
dhcp_client.RELINK_TICK = 120.0
from appliance.router.static_wan import StaticWan
k = StaticWan(sys.argv[1], [ipaddress.ip_interface(sys.argv[2])], [])
k.start()
print("READY", flush=True)
sys.stdin.read()
k.halt()
"""

# In the app namespace: a real RouteWatch filtered by KeptRoutes over one kept route (added by
# RouteSet, as the tunnel adds them), the host's churn made by `ip` here, the verdicts printed.
HINTS = r"""
import json, subprocess, sys
from appliance.gateway.route_keeper import KeptRoutes
from appliance.router.routes import RouteSet
from appliance.tun.route_watch import RouteWatch
keep, other = sys.argv[1:3]
rs = RouteSet()
assert rs.add("198.19.142.0", 24, dev=keep, gateway="198.19.141.2")
w = RouteWatch()
w.concerns = KeptRoutes(lambda: rs.added).concerns

def ip(cmds):
    subprocess.run(["ip", "-batch", "-"], input="\n".join(cmds) + "\n", text=True, check=True)

def hinted():
    seen = False
    for _ in range(200):
        seen = w.changed(16) or seen
        if not w.has_pending:
            return seen
    raise SystemExit("never drained")

out = {}
churn = False
for b in range(4):          # the host's own churn, in batches (the socket's queue is not flooded)
    ip([f"route add 198.18.{140 + b}.{i} dev {other}" for i in range(50)]
       + [f"route del 198.18.{140 + b}.{i} dev {other}" for i in range(50)])
    churn = hinted() or churn
ip([f"link set {other} down", f"link set {other} up", f"route add 198.19.142.0/24 dev {other} table 141",
    f"route del 198.19.142.0/24 dev {other} table 141", f"route add 198.19.142.0/25 dev {keep}",
    f"route del 198.19.142.0/25 dev {keep}"])
out["churn"] = hinted() or churn
out["ignored"] = w.stats.get("ignored", 0)
out["overflows"] = w.stats["overflows"]
ip(["route del 198.19.142.0/24"])
out["kept_removed"] = hinted()
assert rs.restore() == ([rs.added[0]], [])
ip([f"link set {keep} down"])
out["kept_link_down"] = hinted()
print(json.dumps(out), flush=True)
"""


def _start(ns: Netns, code: str, *args: str) -> subprocess.Popen:
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-u", "-c", code, *args], cwd=REPO,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p


def _line(p: subprocess.Popen, want: str, timeout: float = 30.0) -> str:
    """The next line of `p`'s output, which must start with `want` (bounded by a timer kill: a
    helper that prints nothing and stays up would leave readline() blocked past any deadline
    checked between lines; killed, its output ends and readline() returns)."""
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    got = []
    try:
        for line in iter(p.stdout.readline, ""):
            got.append(line)
            if line.startswith(want):
                return line
    finally:
        timer.cancel()
    raise AssertionError(f"no {want!r} from the helper within {timeout} s: {''.join(got)[-3000:]}")


def _end(p: subprocess.Popen) -> str:
    """`p`'s stdin closed (its cue to finish), its remaining output once it ended (bounded)."""
    try:
        out, _ = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(timeout=5)
    return out


class World:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.gw, self.app = Netns(f"n41g{tag}"), Netns(f"n41a{tag}")
        self.gdev, self.adev = f"g41{tag}", f"a41{tag}"
        self.procs: list[subprocess.Popen] = []
        self.gw.run(f"ip link add {self.gdev} type veth peer name {self.adev} netns {self.app.name}")
        self.gw.run(f"ip addr add {GW}/24 dev {self.gdev} && ip addr add {EVIL}/24 dev {self.gdev} && "
                    f"ip -6 addr add {GW6_LL}/64 dev {self.gdev} nodad && "
                    f"ip -6 addr add {EVIL6_LL}/64 dev {self.gdev} nodad && "
                    f"ip -6 addr add 2001:db8:41::1/64 dev {self.gdev} nodad && ip link set {self.gdev} up")
        self.app.run(f"ip addr add {APP}/24 dev {self.adev} && ip -6 addr add {APP6}/64 dev {self.adev} nodad && "
                     f"ip link set {self.adev} up && ip route add default via {GW} && "
                     f"ip -6 route add default via {GW6_LL} dev {self.adev}")
        mac = json.loads(self.gw.run(f"ip -j link show dev {self.gdev}").stdout)[0]["address"]
        self.sender = self._proc(self.gw, SENDER, self.gdev, GW, APP, EVIL, GW6_LL, EVIL6_LL, APP6, mac)
        _line(self.sender, "READY")

    def _proc(self, ns: Netns, code: str, *args: str) -> subprocess.Popen:
        p = _start(ns, code, *args)
        self.procs.append(p)
        return p

    def counter(self, family: int) -> int:
        """Redirects the app namespace's kernel received (counted before it judges them)."""
        if family == 4:
            text = self.app.run("cat /proc/net/snmp").stdout
            m = re.search(r"^IcmpMsg: .*$\n^IcmpMsg: .*$", text, re.M)
            if not m:
                return 0
            names, values = (line.split()[1:] for line in m.group(0).splitlines())
            return int(dict(zip(names, values)).get("InType5", 0))
        m = re.search(r"^Icmp6InRedirects\s+(\d+)", self.app.run("cat /proc/net/snmp6").stdout, re.M)
        return int(m.group(1)) if m else 0

    def redirect(self, family: int, dst: str) -> None:
        """One spoofed redirect for `dst`, sent until the app's kernel counted one (bounded)."""
        before = self.counter(family)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            self.sender.stdin.write(f"{family} {dst}\n")
            self.sender.stdin.flush()
            _line(self.sender, "SENT")
            for _ in range(20):
                if self.counter(family) > before:
                    return
                time.sleep(0.05)
        raise AssertionError(f"the app namespace never received the IPv{family} redirect for {dst}")

    def path(self, dst: str) -> str:
        return self.app.run(f"ip route get {dst}").stdout

    def sysctl(self, path: str) -> str:
        return self.app.run(f"cat /proc/sys/net/{path}").stdout.strip()

    def redirect_sysctls(self) -> set[str]:
        """The values of every redirect switch refuse_redirects sets (one process: a loaded
        machine starts each slowly)."""
        files = [f"/proc/sys/net/ipv4/conf/{d}/{n}" for d in ("all", self.adev)
                 for n in ("accept_redirects", "secure_redirects", "send_redirects")]
        files.append(f"/proc/sys/net/ipv6/conf/{self.adev}/accept_redirects")
        out = self.app.run("cat " + " ".join(files)).stdout.split()
        assert len(out) == len(files), out
        return set(out)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        self.app.delete()
        self.gw.delete()


@pytest.fixture(scope="module")
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


def _taken(w: World, family: int, dst: str, evil: str) -> bool:
    """Whether the kernel's path to `dst` leads to `evil` (polled briefly: the counter said the
    redirect is in; a taken one shows at once)."""
    for _ in range(20):
        if f"via {evil} " in w.path(dst):
            return True
        time.sleep(0.05)
    return False


def test_a_spoofed_redirect_linux_takes_by_default_is_refused_on_the_appliances_nic(world):
    w = world
    # neighbours valid (the kernel takes an IPv4 redirect only to a gateway it has resolved)
    assert w.app.run(f"ping -c 1 -W 5 {EVIL}", check=False).returncode == 0
    # Linux's defaults (no forwarding): taken, both families -- what the appliance without a
    # [lan], or before forwarding goes on, or an IPv6 WAN whose LAN has no IPv6, had
    assert w.sysctl("ipv4/conf/all/accept_redirects") == "1"
    w.redirect(4, "198.18.200.1")
    assert _taken(w, 4, "198.18.200.1", EVIL), w.path("198.18.200.1")
    w.redirect(6, "2001:db8:200::1")
    assert _taken(w, 6, "2001:db8:200::1", EVIL6_LL), w.path("2001:db8:200::1")

    refuser = w._proc(w.app, REFUSER, w.adev)
    _line(refuser, "READY")
    w.redirect(4, "198.18.201.1")
    w.redirect(6, "2001:db8:201::1")
    assert f"via {GW} " in w.path("198.18.201.1"), w.path("198.18.201.1")
    assert f"via {GW6_LL} " in w.path("2001:db8:201::1"), w.path("2001:db8:201::1")
    assert w.redirect_sysctls() == {"0"}

    assert "UNDONE" in _end(refuser)                    # stdin closed: the undo runs
    assert w.redirect_sysctls() == {"1"}                # Linux's defaults back


def test_a_redirect_sent_down_the_tunnel_moves_no_wan_route(world):
    # atk42: without forwarding Linux judges a redirect by the device it came in by (`all` OR
    # that device's accept_redirects) and applies it to the route the inner destination takes:
    # one written into a TUN made after refuse_redirects (its values from `default`, 1) moved
    # the WAN's route to a WAN neighbour (`via` it, for 5 minutes) -- the VPN server's own
    # address among what the server, or a host behind it, could so send elsewhere. Refused now.
    w = world
    assert w.app.run(f"ping -c 1 -W 5 {EVIL}", check=False).returncode == 0      # a resolved neighbour
    tun = f"t42{secrets.token_hex(2)}"
    p = w._proc(w.app, TUN_REDIRECT, w.adev, tun, GW, APP, EVIL, "198.18.202.1")
    _line(p, "READY")
    before = w.counter(4)
    for _ in range(20):                        # written until the kernel counted one (bounded)
        p.stdin.write("go\n")
        p.stdin.flush()
        _line(p, "WROTE")
        time.sleep(0.1)
        if w.counter(4) > before:
            break
    assert w.counter(4) > before, "the redirect written into the TUN never arrived"
    assert not _taken(w, 4, "198.18.202.1", EVIL), w.path("198.18.202.1")
    assert f"via {GW} " in w.path("198.18.202.1")
    assert "UNDONE" in _end(p)


def test_an_ipv6_address_removed_while_the_link_stays_up_is_back_at_once(world):
    w = world
    keeper = w._proc(w.app, KEEPER, w.adev, f"{APP6}/64")
    _line(keeper, "READY")
    try:
        w.app.run(f"ip -6 addr del {APP6}/64 dev {w.adev}")
        gone = time.monotonic()
        back = None
        while time.monotonic() < gone + 20:             # far below the 120 s periodic check
            if f"inet6 {APP6}/64" in w.app.run(f"ip -6 addr show dev {w.adev}").stdout:
                back = time.monotonic() - gone
                break
            time.sleep(0.1)
        assert back is not None, "the IPv6 address did not come back"
        print(f"IPv6 address back {back:.2f} s after its removal (the link up all along)")
    finally:
        _end(keeper)
        w.app.run(f"ip -6 addr add {APP6}/64 dev {w.adev} nodad", check=False)


def test_the_route_keeper_takes_only_its_own_routes_removal_and_links_as_hints(world):
    w = world
    keep, other = "k41", "o41"
    for dev in (keep, other):                              # (no dummy driver here: veth pairs)
        w.app.run(f"ip link add {dev} type veth peer name {dev}p && ip link set {dev}p up && ip link set {dev} up")
    w.app.run(f"ip addr add 198.19.141.1/24 dev {keep}")
    try:
        p = w._proc(w.app, HINTS, keep, other)
        out = _end(p)
        assert out.strip().startswith("{"), out[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert result["overflows"] == 0, result            # else the churn could not be judged
        assert result["churn"] is False and result["ignored"] >= 200, result
        assert result["kept_removed"] is True and result["kept_link_down"] is True, result
    finally:
        w.app.run(f"ip link del {keep}; ip link del {other}", check=False)
