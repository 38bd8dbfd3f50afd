"""A hostile host on the LAN against the router's services, while another LAN host uses them:
the hostile one may spoil its own service, never another host's, nor stall the one pump.

The lab of lab/router_lab.py (Debian's OpenVPN server with dnsmasq behind it, the appliance in
router mode): the victim is a macvlan namespace with a static address that resolves the VPN-only
name through the appliance's forwarder and pings the host behind the VPN; the attacker is the
lab's LAN veth namespace. Figures for these and the other attacks tried are in
lab/reliability/RESULTS.md ("LAN host attacks").
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lab.router_lab import BEHIND, LAN_APP, SECRET_NAME, RouterLab, client_profile
from lab.tools import REPO

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]

VICTIM, VICTIM_MAC, ATTACKER = "198.18.50.20", "52:54:00:18:50:20", "198.18.50.30"
MANY = [f"198.18.50.{i}" for i in range(200, 251)]      # the attacker's other addresses (51)

# The attacker: UDP queries for random names as fast as one Python process sends them, from each
# of its addresses in turn, answers never read. From one address, before the per-address rate,
# the appliance forwarded ~9000 a second, used 67-73% CPU, and the victim lost a quarter to a
# third of its queries; from 51, with only the per-address rate, the victim lost 4 or 5 of 11.
# It floods for at least `seconds` and `least` queries, and on until the file `stop` exists (the
# victim is done; `LONGEST` at most), so every victim query is asked during the flood, and a
# loaded machine's slower flood goes on longer instead of falling short of FLOOD_LEAST.
UDP_FLOOD = r"""
import os, random, socket, struct, sys, time
sys.path.insert(0, sys.argv[4])
from appliance.lan.dns_wire import encode_query
server, sources, seconds, stop, longest = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), sys.argv[5], float(sys.argv[6])
least = int(sys.argv[7])
rng = random.Random(5)
socks = []
for src in sources:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # answers are not read: let them drop here
    s.bind((src, 0))
    s.setblocking(False)
    socks.append(s)
n, t0 = 0, time.monotonic()
print("flooding", flush=True)
while True:
    now = time.monotonic()
    if now - t0 >= longest or (now - t0 >= seconds and n > least and n % 64 == 0 and os.path.exists(stop)):
        break
    for s in socks:
        try:
            s.sendto(encode_query(rng.getrandbits(16), f"x{rng.getrandbits(40):x}.vpn.test"), (server, 53))
            n += 1
        except BlockingIOError:
            pass
print(n)
"""

# The victim: `count` UDP queries, one every 0.2 s (or as soon as the last was answered), 1.5 s to
# answer each (a stub resolver's first timeout is 1 to 5 s): how many were answered NOERROR, how
# many not, and the answers' slowest and median times (printed, not asserted: they follow the
# machine's load).
VICTIM_DNS = r"""
import json, random, socket, struct, sys, time
sys.path.insert(0, sys.argv[4])
from appliance.lan.dns_wire import encode_query
server, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ok = lost = other = 0
took = []
for _ in range(count):
    t0 = time.monotonic()
    mid = random.randrange(65536)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        s.sendto(encode_query(mid, name), (server, 53))
        try:
            while True:
                m = s.recv(4096)
                if struct.unpack_from("!H", m)[0] == mid:
                    break
            if m[3] & 15 == 0:
                ok += 1
                took.append(time.monotonic() - t0)
            else:
                other += 1
        except socket.timeout:
            lost += 1
    time.sleep(max(0.0, 0.2 - (time.monotonic() - t0)))
took.sort()
print(json.dumps({"ok": ok, "lost": lost, "other": other, "slowest": round(took[-1], 3) if took else None,
                  "median": round(took[len(took) // 2], 3) if took else None}))
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (from /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def lab():
    with RouterLab() as lab:
        lab.openvpn_server()
        lab.dns_server()
        lab.app_proc = lab.appliance(lab.appliance_toml(client_profile(lab.pki)), wait=60,
                                     pattern="DNS forwarder: LAN queries go to")
        lab.victim = lab._ns("v")
        lab.lan.run(f"ip link add link {lab.lan_host_if} name mvic address {VICTIM_MAC} type macvlan mode bridge && "
                    f"ip link set mvic netns {lab.victim.name}")
        lab.victim.run(f"ip link set mvic up && ip addr add {VICTIM}/24 dev mvic && "
                       f"ip route add default via {LAN_APP}")
        lab.lan.run(f"ip addr add {ATTACKER}/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        for a in MANY:
            lab.lan.run(f"ip addr add {a}/32 dev {lab.lan_host_if}")
        yield lab


VICTIM_QUERIES = 30
LONGEST = 40                # seconds the flood may go on (for the victim to finish, for FLOOD_LEAST)
FLOOD_LEAST = 50_000        # queries the flood sends at least (8 s of it: 155,000 at load 15; 42,000 under stress-ng -c 2)


@pytest.mark.parametrize("sources, counter, tolerated", [([ATTACKER], "over one LAN address's query rate", 1),
                                                         (MANY, "over the LAN's query rate", 3)],
                         ids=["one-address", "51-addresses"])
def test_a_dns_flood_from_one_lan_host_leaves_another_hosts_dns_and_tunnel_working(lab, sources, counter, tolerated):
    """UDP queries from one LAN address (or 51 of them) as fast as the attacker sends them, for
    8 s and on until the victim is done, while the victim asks 30 times (every 0.2 s, or when the
    last was answered) and pings through the tunnel: every victim query is answered within its
    1.5 s (on a loaded machine one lost is tolerated, three from 51 addresses: of 30; it was 4-5
    of 11 there), no ping is lost, and the appliance stays up and counts the excess.

    (helper trim45a) The victim asked for 9 s and had to get 25 answers: a bound on the answers'
    mean time (~0.36 s) as much as on losses, which a loaded machine broke (20 answers in 9 s
    where 25 were wanted; the flood and the appliance share two cores there, and the flood's
    datagrams queue ahead of the victim's in the LAN socket). Now each of a fixed count
    is asked during the flood and must be answered within the stub's timeout; the times are
    printed."""
    flood, probe = lab.write("dns-flood.py", UDP_FLOOD), lab.write("dns-victim.py", VICTIM_DNS)
    stop = lab.tmp / "dns-flood.stop"
    stop.unlink(missing_ok=True)
    pid = lab.app_proc.p.pid
    mark = len(lab.app_proc.log())
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    ping = subprocess.Popen(["ip", "netns", "exec", lab.victim.name, "ping", "-q", "-i", "0.2", "-W", "2", "-w", "10",
                             BEHIND], stdout=subprocess.PIPE, text=True)
    attacker = subprocess.Popen(["ip", "netns", "exec", lab.lan.name, sys.executable, str(flood), LAN_APP,
                                 ",".join(sources), "8", str(REPO), str(stop), str(LONGEST), str(FLOOD_LEAST)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # (it prints "flooding" just before its first query)
        assert attacker.stdout is not None and attacker.stdout.readline().strip() == "flooding", \
            attacker.communicate(timeout=60)
        victim = subprocess.Popen(["ip", "netns", "exec", lab.victim.name, sys.executable, str(probe), LAN_APP,
                                   SECRET_NAME, str(VICTIM_QUERIES), str(REPO)], stdout=subprocess.PIPE, text=True)
        got = json.loads(victim.communicate(timeout=120)[0].strip().splitlines()[-1])
        pinged = ping.communicate(timeout=60)[0]
    finally:
        stop.touch()
        out, err = attacker.communicate(timeout=LONGEST + 20)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    print(f"flood {out.strip()} queries; victim {got}; appliance CPU {cpu:.0%}")
    assert attacker.returncode == 0 and int(out) > FLOOD_LEAST, f"the flood did not run: {out} {err}"
    assert got["ok"] + got["lost"] + got["other"] == VICTIM_QUERIES, got
    assert got["lost"] + got["other"] <= tolerated, (got, cpu, lab.app_proc.log()[-2000:])
    # (`ping -w 10` stops at its deadline: the last echo, sent ~0.2 s before, may be answered after
    # it and counted lost on a loaded machine -- one echo short is the deadline, not the tunnel)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", pinged)
    assert m and int(m.group(2)) >= int(m.group(1)) - 1 and int(m.group(1)) >= 40, pinged
    # The appliance's CPU is printed, not asserted: it follows the flood's rate, which follows the
    # machine's load (15-41% at ~20,000 queries a second on a busy machine, 75% at ~100,000 on a
    # quiet one, where the victim still lost none). What a user checks is the victim's service.
    assert lab.app_proc.alive()
    # The excess is counted, in one line per LOG_EVERY (not one per query) -- and at once on
    # SIGUSR2 (helper trim44a: the wait for the periodic line was up to 30 s of each case).
    assert len(re.findall(r"DNS forwarder: ", lab.app_proc.log()[mark:])) <= 2, lab.app_proc.log()[mark:][-2000:]
    os.kill(pid, signal.SIGUSR2)
    assert lab.app_proc.wait_for(rf"DNS forwarder: .*dropped: {counter}=\d{{4,}}", 20, after=mark), \
        lab.app_proc.log()[-2000:]
