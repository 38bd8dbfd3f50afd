"""A hostile VPN resolver's huge answers against the appliance's pump, in the router lab (root;
prints, asserts nothing):

    python -m lab.reliability.lan_resolver_attack [--seconds 10] [--rate 100] [--tree PATH]

The VPN side's dnsmasq answers `big.vpn.test` with 4,000 addresses (from an addn-hosts file: a
~64 KiB answer over TCP), the last of them the LAN host's own (DNS rebinding: the answer is
blocked). The LAN host asks for it over TCP `rate` times a second (one connection, pipelined,
paced) while it pings the host behind the VPN every 20 ms; printed: the ping's round trips
(avg, p99, max, lost) with and without the queries, the answers' RCODEs and the appliance's CPU.
`--tree` runs the appliance from another checkout's `appliance` package (PYTHONPATH; e.g. main,
for the figures before a change)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ..router_lab import BEHIND, LAN_APP, RouterLab, client_profile, server_config
from ..tools import REPO

CLIENT = r'''
import json, socket, struct, subprocess, sys, threading, time
sys.path.insert(0, REPO)
from appliance.lan.dns_wire import encode_query
seconds, rate = SECONDS, RATE
def ping():
    r = subprocess.run(["ping", "-n", "-q", "-i", "0.02", "-w", str(seconds), "-W", "1", BEHIND],
                       capture_output=True, text=True)
    return r.stdout
def queries(out):
    s = socket.create_connection((LAN_APP, 53), timeout=5); s.settimeout(0.001)
    buf, rc, sent = b"", {}, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        due = int((time.monotonic() - t0) * rate)
        while sent < due:
            q = encode_query(sent & 0xFFFF, "big.vpn.test")
            try:
                s.sendall(struct.pack("!H", len(q)) + q); sent += 1
            except OSError:
                s = socket.create_connection((LAN_APP, 53), timeout=5); s.settimeout(0.001); buf = b""
        try:
            d = s.recv(1 << 20)
            if not d:
                s = socket.create_connection((LAN_APP, 53), timeout=5); s.settimeout(0.001); buf = b""
            buf += d
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            s = socket.create_connection((LAN_APP, 53), timeout=5); s.settimeout(0.001); buf = b""
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
            n = struct.unpack_from("!H", buf)[0]; a = buf[2:2 + n]; buf = buf[2 + n:]
            key = f"rcode{a[3] & 15}/an{struct.unpack_from('!H', a, 6)[0]}"
            rc[key] = rc.get(key, 0) + 1
    out["sent"], out["answers"] = sent, rc
out = {}
if rate:
    t = threading.Thread(target=queries, args=(out,)); t.start()
out["ping"] = ping()
if rate:
    t.join()
print(json.dumps(out))
'''


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_client(lab: RouterLab, seconds: int, rate: int) -> dict:
    code = (CLIENT.replace("REPO", repr(str(REPO))).replace("SECONDS", str(seconds)).replace("RATE", str(rate))
            .replace("LAN_APP", repr(LAN_APP)).replace("BEHIND", repr(BEHIND)))
    r = subprocess.run(["ip", "netns", "exec", lab.lan.name, sys.executable, "-c", code], capture_output=True,
                       text=True, timeout=seconds + 60)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def ping_summary(text: str) -> str:
    lines = [x for x in text.splitlines() if "packet loss" in x or "rtt" in x]
    return " / ".join(x.strip() for x in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--tree", default=None)
    a = ap.parse_args()
    env = {"PYTHONPATH": a.tree, "PYTHONDONTWRITEBYTECODE": "1"} if a.tree else None
    with RouterLab() as lab:
        lab.lan.run(f"ip addr add 198.18.50.10/24 dev {lab.lan_host_if} && ip route add default via {LAN_APP}")
        hosts = lab.write("big.hosts", "".join(f"198.18.{200 + i // 250}.{1 + i % 250} big.vpn.test\n"
                                               for i in range(3999)) + "198.18.50.10 big.vpn.test\n")
        lab.openvpn_server(server_config(lab.pki, extra="explicit-exit-notify 1\n"))
        lab.dns_server(extra=(f"--addn-hosts={hosts}", "--no-negcache"))
        toml = lab.appliance_toml(client_profile(lab.pki))
        p = lab.start(lab.app, [str(REPO / ".venv" / "bin" / "vpn-appliance"), "run", str(toml)], "appliance", env)
        if not p.wait_for("DNS forwarder: LAN queries go to", 60):
            raise AssertionError(p.log()[-3000:])
        pid = p.p.pid                       # `ip netns exec` execs the appliance: the same process
        for rate in (0, a.rate):
            c0 = cpu_seconds(pid)
            t0 = time.monotonic()
            r = run_client(lab, a.seconds, rate)
            cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
            print(f"queries {rate}/s: ping {ping_summary(r['ping'])}; sent {r.get('sent', 0)}, "
                  f"answers {r.get('answers', {})}; appliance CPU {100 * cpu:.0f}%")
        print("appliance:", " | ".join(x.split(" INFO ", 1)[-1] for x in p.log().splitlines()
                                       if "DNS forwarder" in x)[-900:])


if __name__ == "__main__":
    main()
